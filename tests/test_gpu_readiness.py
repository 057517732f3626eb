"""What the GPU recipes set for speed by construction: mixed precision
where the official recipes use it, pinned loaders and non-blocking copies
(checked on the configs; the speed itself needs a GPU, see
benchmarks/gpu_dist_check.py)."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
VL = sorted(glob.glob(osp.join(REPO, 'configs', 'beit3', '*-p16-*_*.py')))
AMP = VL + [
    osp.join(REPO, 'configs', 'mmpretrain', f'beit3-{size}-p16_8xb128-'
             'coslr-50e_in1k.py') for size in ('base', 'large')] + sorted(
    glob.glob(osp.join(REPO, 'configs', 'mmseg', 'upernet_beit3-*-p16_*')))


@pytest.mark.parametrize('path', AMP, ids=osp.basename)
def test_recipes_train_in_mixed_precision(path):
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper', path
    if 'large' not in path or 'mmseg' not in path:
        assert cfg.optim_wrapper.dtype == 'bfloat16', path


@pytest.mark.parametrize('path', VL + [
    osp.join(REPO, 'configs', 'beit3',
             'beit3-base-p16_64xb32x3-1m_pretrain.py')], ids=osp.basename)
def test_loaders_pin_memory_and_copies_do_not_block(path):
    cfg = Config.fromfile(path)
    loaders = [cfg.train_dataloader] if 'type' not in cfg.train_dataloader \
        and 'dataset' in cfg.train_dataloader else \
        list(cfg.train_dataloader.values())
    for loader in loaders:
        if isinstance(loader, dict) and 'dataset' in loader:
            assert loader.get('pin_memory') is True, path
    preprocessor = cfg.model.data_preprocessor
    if preprocessor.type.endswith('VLDataPreprocessor'):
        assert preprocessor.non_blocking is True
    else:  # MultiSourceDataPreprocessor: non-blocking by default
        from mmvlp.models.data_preprocessors import \
            MultiSourceDataPreprocessor
        assert MultiSourceDataPreprocessor()._non_blocking is True


def test_vl_data_preprocessor_is_mmpretrains_with_non_blocking_copies():
    from mmpretrain.models.utils import MultiModalDataPreprocessor

    from mmvlp.models.data_preprocessors import VLDataPreprocessor
    settings = dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)
    ours = VLDataPreprocessor(non_blocking=True, **settings)
    theirs = MultiModalDataPreprocessor(**settings)
    assert ours._non_blocking and not theirs._non_blocking
    batch = dict(inputs=[torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
                         for _ in range(2)], data_samples=None)
    torch.testing.assert_close(ours(batch)['images'],
                               theirs(batch)['images'])
