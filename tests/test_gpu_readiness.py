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


def test_pretraining_step_host_syncs(tmp_path):
    """The host syncs of one BEiT-3 pretraining step (forward of the three
    sources, backward, AdamW step with clipping, hooks), counted on the
    CPU by the operators that need a device value on the host. Those that
    stay are listed in docs/scaling.md with the reason."""
    from helpers.demo_data import make_demo_with_spm
    from mmengine.hooks import Hook
    from test_pretrain_runner import _cfg

    from mmvlp.testing.host_syncs import HostSyncCensus
    from mmvlp.runtime import build_runner, setup_launch
    root = make_demo_with_spm(tmp_path / 'data', num_train=8, num_val=2)
    cfg = _cfg(root, tmp_path / 'work', max_iters=2)
    for loader in cfg.train_dataloader.values():
        loader.batch_size = 2
    cfg.launcher = 'none'
    setup_launch(cfg)
    runner = build_runner(cfg)
    census = HostSyncCensus(packages=('/mmvlp/', '/torch/optim/',
                                      '/mmengine/'))

    class Census(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if batch_idx == 1:
                census.__enter__()

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if batch_idx == 1:
                census.__exit__(None, None, None)

    runner.register_hook(Census(), 'VERY_HIGH')
    runner.train()
    files = {}
    for where, count in census.by_place().items():
        name = where.rsplit(':', 1)[0]
        files[name] = files.get(name, 0) + count
    # CPU-only reads: input checks (device asserts on a GPU) and AdamW's
    # step counters (CPU tensors on a GPU too).
    files.pop('mmvlp/utils/checks.py', None)
    optimizer = [k for k in files if k.startswith('torch/optim/')]
    for name in optimizer:
        files.pop(name)
    assert files == {
        # One nonzero per head call (MIM of images and pairs, MLM of texts
        # and pairs): the number of masked positions.
        'mmvlp/models/heads/masked_token.py': 4,
        # NonFiniteLossHook: the loss before backward, the gradients
        # before the step (all-reduced, so every rank skips together).
        'mmvlp/engine/hooks/nonfinite.py': 2,
        # OptimWrapper logs the gradient norm of clip_grad as a float.
        'mmengine/optim/optimizer/optimizer_wrapper.py': 1,
    }, files


def test_host_sync_places_ignore_the_checkout_path():
    """A checkout or virtualenv whose path holds 'mmvlp' (a clone named
    mmvlp with its .venv inside, as CI has) is not taken for the package."""
    from mmvlp.testing import host_syncs
    venv = '/ci/mmvlp/.venv/lib/python3.11/site-packages/'
    assert host_syncs.relative_source_path(venv + 'torch/_compile.py') == \
        'torch/_compile.py'
    assert host_syncs.relative_source_path(venv + 'mmengine/optim/x.py') == \
        'mmengine/optim/x.py'
    package = host_syncs._PACKAGE_PARENT + '/mmvlp/models/heads/a.py'
    assert host_syncs.relative_source_path(package) == \
        'mmvlp/models/heads/a.py'
