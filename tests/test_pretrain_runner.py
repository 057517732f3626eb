"""The demo pretraining config runs with the real Runner on generated data:
three sources per iteration, per-source losses, checkpoints."""
import os.path as osp

import pytest
import torch
from helpers.demo_data import make_demo_with_spm
from mmengine.config import Config
from mmengine.runner import Runner

from mmvlp.engine import MultiSourceLoader

CONFIG = osp.join(osp.dirname(__file__), '..', 'configs', 'demo',
                  'beit3-tiny-p8_demo-pretrain.py')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_with_spm(tmp_path_factory.mktemp('pretrain'),
                              num_train=12, num_val=2)


def _cfg(demo_root, work_dir, max_iters=3):
    cfg = Config.fromfile(CONFIG)
    model_file = osp.join(demo_root, 'text_spm.model')
    for source, loader in cfg.train_dataloader.items():
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        dataset = loader.dataset
        if 'data_root' in dataset:
            dataset.data_root = demo_root
        if source == 'text':
            dataset.ann_file = osp.join(demo_root, 'captions_train.jsonl')
            dataset.tokenizer.model_file = model_file
        for step in dataset.pipeline:
            if step.type == 'TokenizeText':
                step.model_file = model_file
    # A random (k-means-free) tokenizer stands in for the trained one.
    cfg.model.tokenizer_checkpoint = None
    cfg.model.tokenizer.quantizer.kmeans_init = False
    cfg.train_cfg.max_iters = max_iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.,
                                by_epoch=False)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    return cfg


def test_demo_pretrain_config_trains(demo_root, tmp_path):
    runner = Runner.from_cfg(_cfg(demo_root, tmp_path))
    loader = runner.train_loop.dataloader
    assert isinstance(loader, MultiSourceLoader)
    assert set(loader.loaders) == {'image', 'text', 'pair'}
    runner.train()
    hub = runner.message_hub
    for key in ('loss_mim_image', 'loss_mlm_text', 'loss_mim_pair',
                'loss_mlm_pair', 'acc_mim_image', 'acc_mlm_pair'):
        assert torch.isfinite(
            torch.tensor(hub.get_scalar(f'train/{key}').current())), key
    assert osp.isfile(osp.join(str(tmp_path), 'iter_3.pth'))


def test_one_batch_has_every_source(demo_root, tmp_path):
    runner = Runner.from_cfg(_cfg(demo_root, tmp_path))
    batch = next(iter(runner.train_loop.dataloader))
    data = runner.model.data_preprocessor(batch, True)['inputs']
    image, text, pair = data['image'], data['text'], data['pair']
    assert image['images'].shape == (4, 3, 48, 48)
    assert image['tokenizer_images'].shape == (4, 3, 48, 48)
    assert image['tokenizer_images'].min() >= 0  # raw pixels
    assert image['vision_mask'].shape == (4, 6, 6)
    assert text['masked_text_ids'].shape == (4, Config.fromfile(CONFIG).max_text_len)
    assert (text['text_mlm_mask'] & text['text_padding_mask']).sum() == 0
    assert pair['text_mlm_mask'].sum() > text['text_mlm_mask'].sum() * 1.5
    assert set(pair) >= {'images', 'vision_mask', 'masked_text_ids',
                         'text_ids', 'text_padding_mask'}
