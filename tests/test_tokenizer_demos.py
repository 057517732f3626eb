"""Tiny-budget runs of the tokenizer demo configs with the real Runner,
hooks and metrics (the full demos: docs/visual_tokenizers.md)."""
import copy
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmvlp.datasets import make_demo_dataset
from mmvlp.text import train_sentencepiece
from mmvlp.compat.torch_load import safe_torch_load

CONFIGS = osp.join(osp.dirname(__file__), '..', 'configs', 'tokenizers')


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    make_demo_dataset(str(root), num_train=8, num_val=4, size=64)
    train_sentencepiece(osp.join(root, 'captions_train.jsonl'),
                        osp.join(root, 'text_spm'), vocab_size=100,
                        field='caption')
    return str(root)


def _run(config, demo_data, work_dir, options=None):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.merge_from_dict(options or {})
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


def _val_images(runner):
    """The validation images as the model gets them (raw pixels)."""
    batches = [runner.model.data_preprocessor(batch, False)['inputs']
               for batch in runner.val_dataloader]
    return torch.cat(batches)


def test_vqkd_demo_config(demo_data, tmp_path):
    # (48 codes: not the 64 tokens of the validation set, so that a share
    # of the tokens cannot pass for a share of the codebook.)
    runner = _run('vqkd_vit-tiny-p16_hog_demo.py', demo_data, tmp_path,
                  {'model.quantizer.num_codes': 48})
    hub = runner.message_hub
    # Usage by hand: the distinct ids of the validation images over the
    # codebook size.
    model = runner.model.eval()
    with torch.no_grad():
        ids = model.encode(_val_images(runner))
    assert ids.numel() == 4 * 16
    assert model.quantizer.num_codes == 48
    usage = 100. * ids.unique().numel() / 48
    assert hub.get_scalar('val/codebook/usage').current() == \
        pytest.approx(usage)
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
    # The validation metrics by hand: scikit-image's PSNR and SSIM
    # (Gaussian 11-tap window, sigma 1.5) of each reconstruction, averaged
    # over the images, and the distinct token ids.
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    model = runner.model.eval()
    images = _val_images(runner)
    with torch.no_grad():
        recon = model.reconstruct(images).double().numpy()
        ids = model.encode(images)
    images = images.double().numpy()
    psnr = np.mean([peak_signal_noise_ratio(i, r, data_range=255)
                    for i, r in zip(images, recon)])
    ssim = np.mean([structural_similarity(
        i, r, data_range=255, channel_axis=0, gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False)
        for i, r in zip(images, recon)])
    assert len(images) == 4
    assert hub.get_scalar('val/recon/psnr').current() == pytest.approx(
        psnr, abs=1e-4)
    assert hub.get_scalar('val/recon/ssim').current() == pytest.approx(
        ssim, abs=1e-5)
    assert hub.get_scalar('val/codebook/distinct_codes').current() == \
        ids.unique().numel()
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
    snapshot = _BeforeLastStep()
    runner.register_hook(snapshot)
    runner.train()
    for key, value in encoder.items():
        assert torch.equal(runner.model.state_dict()[key], value), key
    # The last step's discriminator hinge loss by hand, from the model as it
    # was before that step: (mean relu(1 - D(real)) + mean relu(1 +
    # D(fake))) / 2 with images in [-1, 1].
    before = snapshot.model
    with torch.no_grad():
        images = before.data_preprocessor(snapshot.batch, True)['inputs']
        _, recon = before._stage2_losses(images.float(), False)
        real = before.discriminator(images.float() / 127.5 - 1)
        fake = before.discriminator(recon / 127.5 - 1)
    loss_disc = (torch.clamp(1 - real, min=0).mean() +
                 torch.clamp(1 + fake, min=0).mean()) / 2
    assert runner.message_hub.get_scalar('train/loss_disc').current() == \
        pytest.approx(float(loss_disc), rel=1e-5)
    assert runner.message_hub.get_scalar('val/recon/psnr').current() > 0


class _BeforeLastStep(Hook):
    """Keep a copy of the model and the batch of the last training step,
    taken before that step."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == runner.max_iters:
            self.model = copy.deepcopy(runner.model)
            self.batch = copy.deepcopy(data_batch)


def test_bsqvit_text_demo_config(demo_data, tmp_path):
    """QLIP stage 1 with captions: the contrastive loss and its
    gradient-balanced weight are trained and logged."""
    runner = _run('bsqvit-text_vit-tiny-p8_demo.py', demo_data, tmp_path)
    hub = runner.message_hub
    assert hub.get_scalar('train/loss_contrastive').current() > 0
    assert hub.get_scalar('train/contrastive_weight').current() > 0
    assert runner.model.text_proj.weight.abs().sum() > 0
