"""Tiny-budget runs of the tokenizer demo configs with the real Runner,
hooks and metrics (the full demos: see README, "Visual tokenizers")."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmvlp.datasets import make_demo_dataset
from mmvlp.text import train_sentencepiece
from mmvlp.utils import safe_torch_load

CONFIGS = osp.join(osp.dirname(__file__), '..', 'configs', 'tokenizers')


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    make_demo_dataset(str(root), num_train=8, num_val=4, size=64)
    train_sentencepiece(osp.join(root, 'captions_train.jsonl'),
                        osp.join(root, 'text_spm'), vocab_size=100,
                        field='caption')
    return str(root)


def _run(config, demo_data, work_dir):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(batch_size=4, num_workers=0,
                           persistent_workers=False)
        cfg[loader].dataset.data_root = demo_data
        for step in cfg[loader].dataset.pipeline:
            if step.type == 'TokenizeText':
                step.model_file = osp.join(demo_data, 'text_spm.model')
    cfg.train_cfg.update(max_iters=4, val_interval=4)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1., by_epoch=False)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 4
    for hook in cfg.custom_hooks:
        if hook.type == 'CodebookHealthHook':
            hook.interval = 2
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _scalars(work_dir):
    path, = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_vqkd_demo_config(demo_data, tmp_path):
    runner = _run('vqkd_vit-tiny-p16_hog_demo.py', demo_data, tmp_path)
    hub = runner.message_hub
    assert 0 < hub.get_scalar('val/codebook/usage').current() <= 100
    assert hub.get_scalar('val/codebook/tokens').current() == 4 * 16
    logged = [r for r in _scalars(str(tmp_path))
              if 'codebook/quantizer/usage' in r]
    assert [r['step'] for r in logged] == [2, 4]
    assert glob.glob(osp.join(str(tmp_path), '*', 'vis_data', 'vis_image',
                              'tokenizer_4.png'))
    assert osp.isfile(osp.join(str(tmp_path), 'iter_4.pth'))


def test_bsqvit_demo_config(demo_data, tmp_path):
    runner = _run('bsqvit_vit-tiny-p8_demo.py', demo_data, tmp_path)
    hub = runner.message_hub
    assert hub.get_scalar('val/recon/psnr').current() > 0
    assert 0 < hub.get_scalar('val/recon/ssim').current() <= 1
    assert hub.get_scalar('val/codebook/distinct_codes').current() >= 1
    image, = glob.glob(osp.join(str(tmp_path), '*', 'vis_data', 'vis_image',
                                'tokenizer_4.png'))
    from PIL import Image
    width, height = Image.open(image).size
    assert (width, height) == (3 * 64, 4 * 64)  # image | ids | recon rows
    # The same grid under a fixed name (make demo-tokenizers).
    latest = np.asarray(Image.open(tmp_path / 'tokenizer.png'))
    assert (latest == np.asarray(Image.open(image).convert('RGB'))).all()


def test_vqkd_base_recipe_config():
    """The BEiT v2 recipe's numbers, and a clear error without the teacher."""
    cfg = Config.fromfile(osp.join(
        CONFIGS, 'vqkd_vit-base-p16_clip-teacher_8xb64-100e_in1k.py'))
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.lr, optimizer.betas, optimizer.weight_decay) == (
        2e-4, (0.9, 0.99), 1e-4)
    assert cfg.auto_scale_lr.base_batch_size == 512
    assert cfg.train_dataloader.batch_size * 8 == 512
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.param_scheduler[0].end == 10
    assert cfg.param_scheduler[1].eta_min == 1e-5
    assert (cfg.model.quantizer.num_codes, cfg.model.quantizer.code_dims,
            cfg.model.quantizer.decay) == (8192, 32, 0.99)
    from mmengine.registry import init_default_scope
    from mmvlp.registry import MODELS
    init_default_scope('mmvlp')
    cfg.model.encoder.arch = 'tiny'  # the error comes before any weights
    with pytest.raises(FileNotFoundError, match='teacher checkpoint'):
        MODELS.build(cfg.model)


def test_bsqvit_stage2_demo_config(demo_data, tmp_path, vgg_checkpoint):
    """Stage 2 from a stage-1 checkpoint with the real Runner: separate
    optimizers for the generator and the discriminator."""
    stage1 = tmp_path / 'stage1'
    _run('bsqvit_vit-tiny-p8_demo.py', demo_data, stage1)
    cfg = Config.fromfile(osp.join(CONFIGS,
                                   'bsqvit_vit-tiny-p8_stage2_demo.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(batch_size=4, num_workers=0,
                           persistent_workers=False)
        cfg[loader].dataset.data_root = demo_data
    cfg.model.perceptual_loss.vgg_checkpoint = vgg_checkpoint
    cfg.model.disc_start_iter = 1
    cfg.load_from = str(stage1 / 'iter_4.pth')
    cfg.train_cfg.update(max_iters=3, val_interval=3)
    cfg.default_hooks.checkpoint.interval = 3
    cfg.work_dir = str(tmp_path / 'stage2')
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    encoder = {k: v.clone() for k, v in
               safe_torch_load(cfg.load_from)['state_dict']
               .items() if k.startswith('encoder.')}
    runner.train()
    for key, value in encoder.items():
        assert torch.equal(runner.model.state_dict()[key], value), key
    assert runner.message_hub.get_scalar('train/loss_disc').current() > 0
    assert runner.message_hub.get_scalar('val/recon/psnr').current() > 0


def test_bsqvit_text_demo_config(demo_data, tmp_path):
    """QLIP stage 1 with captions: the contrastive loss and its
    gradient-balanced weight are trained and logged."""
    runner = _run('bsqvit-text_vit-tiny-p8_demo.py', demo_data, tmp_path)
    hub = runner.message_hub
    assert hub.get_scalar('train/loss_contrastive').current() > 0
    assert hub.get_scalar('train/contrastive_weight').current() > 0
    assert runner.model.text_proj.weight.abs().sum() > 0
