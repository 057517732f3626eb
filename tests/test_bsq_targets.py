"""BSQ (QLIP) tokens as BEiT-3 MIM targets: the factorised head and the
BSQ-target demo config (trains, loss decreases, resumes exactly)."""
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
import helpers.training_record  # noqa: F401  (registers the hook)
from helpers.demo_data import make_demo_with_spm
from mmengine.config import Config
from mmengine.runner import Runner

from mmvlp.datasets.transforms.packing import PRETRAIN_KEYS
from mmvlp.models.algorithms import BEiT3Pretrain
from mmvlp.models.heads import FactorizedTokenHead, MaskedTokenHead
from mmvlp.models.quantizers import BinarySphericalQuantizer

CONFIG = osp.join(osp.dirname(__file__), '..', 'configs', 'demo',
                  'beit3-tiny-p8_demo-pretrain-bsq.py')
BACKBONE = dict(type='BEiT3', arch=dict(embed_dims=32, num_layers=1,
                                        num_heads=2,
                                        feedforward_channels=64),
                img_size=16, patch_size=8, vocab_size=40, max_text_len=8,
                text_mask_token_id=39)


def test_group_targets_follow_the_quantizer_bit_order():
    """Bits and groups of an id are the quantizer's code dimensions, most
    significant first (big-endian), as QLIP writes them."""
    quantizer = BinarySphericalQuantizer(code_dims=12, group_size=4)
    codes = torch.randn(50, 12)
    ids = quantizer.codes_to_indices(codes)
    bits = FactorizedTokenHead(8, 12, group_size=1).group_targets(ids)
    assert torch.equal(bits.bool(), codes > 0)
    head = FactorizedTokenHead(8, 12, group_size=4)
    assert torch.equal(head.group_targets(ids),
                       quantizer.codes_to_group_indices(codes))
    assert torch.equal(head.combine(head.group_targets(ids)), ids)
    # 62-bit ids stay exact.
    big = torch.tensor([2**61 + 12345, 2**62 - 1])
    head = FactorizedTokenHead(8, 62, group_size=2)
    assert torch.equal(head.combine(head.group_targets(big)), big)


def test_per_bit_loss_and_metrics():
    torch.manual_seed(0)
    head = FactorizedTokenHead(16, 6, group_size=1)
    hidden = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]]).bool()
    targets = torch.randint(0, 64, (2, 5))
    loss, acc, metrics = head.loss(hidden, mask, targets,
                                   return_metrics=True)
    logits = head(hidden[mask])
    bits = torch.stack([(targets[mask] >> (5 - i)) & 1 for i in range(6)],
                       -1)
    expected = F.binary_cross_entropy_with_logits(logits, bits.float())
    torch.testing.assert_close(loss, expected)
    pred = (logits > 0).long()
    torch.testing.assert_close(acc, (pred == bits).all(-1).float().mean()
                               * 100)
    torch.testing.assert_close(metrics['acc_bit'],
                               (pred == bits).float().mean() * 100)
    assert torch.equal(head.predict(hidden[mask]),
                       (pred << torch.arange(5, -1, -1)).sum(-1))
    # Sum reduction: the factorised token negative log-likelihood.
    head.loss_reduction = 'sum'
    torch.testing.assert_close(head.loss(hidden, mask, targets)[0],
                               expected * 6)


def test_grouped_softmax_loss_and_metrics():
    torch.manual_seed(1)
    head = FactorizedTokenHead(16, 6, group_size=3)
    assert head.fc.out_features == 2 * 8
    hidden = torch.randn(10, 16)
    targets = torch.randint(0, 64, (10,))
    loss, acc, metrics = head.loss(hidden[None], torch.ones(1, 10).bool(),
                                   targets[None], return_metrics=True)
    logits = head(hidden)  # (10, 2, 8)
    groups = torch.stack([targets >> 3, targets & 7], -1)
    expected = (F.cross_entropy(logits[:, 0], groups[:, 0]) +
                F.cross_entropy(logits[:, 1], groups[:, 1])) / 2
    torch.testing.assert_close(loss, expected)
    pred = logits.argmax(-1)
    torch.testing.assert_close(metrics['acc_group'],
                               (pred == groups).float().mean() * 100)
    torch.testing.assert_close(acc, (pred == groups).all(-1).float().mean()
                               * 100)
    with pytest.raises(ValueError, match=r'2\*\*6'):
        head.loss(hidden[None], torch.ones(1, 10).bool(),
                  torch.full((1, 10), 64))


def test_bsq_tokenizer_needs_the_factorised_head():
    tokenizer = dict(type='BSQViT', encoder=dict(
        arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                  feedforward_channels=32), img_size=16, patch_size=8),
        quantizer=dict(type='BinarySphericalQuantizer', code_dims=18,
                       group_size=9),
        decoder=dict(arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                               feedforward_channels=32)))
    with pytest.raises(ValueError, match='FactorizedTokenHead'):
        BEiT3Pretrain(BACKBONE, tokenizer=tokenizer)
    model = BEiT3Pretrain(
        BACKBONE, tokenizer=tokenizer,
        mim_head=dict(type='FactorizedTokenHead', group_size=9))
    assert isinstance(model.mim_head, FactorizedTokenHead)
    assert (model.mim_head.num_bits, model.mim_head.fc.out_features) == \
        (18, 2 * 512)
    # Precomputed ids: the vocabulary gives the bits.
    model = BEiT3Pretrain(BACKBONE, visual_vocab_size=2**10,
                          mim_head=dict(type='FactorizedTokenHead'))
    assert model.mim_head.num_bits == 10
    with pytest.raises(ValueError, match='2\\*\\*L'):
        BEiT3Pretrain(BACKBONE, visual_vocab_size=1000,
                      mim_head=dict(type='FactorizedTokenHead'))
    # Small vocabularies keep the linear head.
    model = BEiT3Pretrain(BACKBONE, visual_vocab_size=8192)
    assert isinstance(model.mim_head, MaskedTokenHead)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_with_spm(tmp_path_factory.mktemp('bsq_targets'),
                              num_train=12, num_val=2)


def _cfg(demo_root, work_dir, max_iters, checkpoint_interval):
    cfg = Config.fromfile(CONFIG)
    model_file = osp.join(demo_root, 'text_spm.model')
    batch = dict(image=4, text=3, pair=4)
    for source, loader in cfg.train_dataloader.items():
        loader.update(batch_size=batch[source], num_workers=0,
                      persistent_workers=False)
        dataset = loader.dataset
        if 'data_root' in dataset:
            dataset.data_root = demo_root
        if source == 'text':
            dataset.ann_file = osp.join(demo_root, 'captions_train.jsonl')
            dataset.tokenizer.model_file = model_file
        for step in dataset.pipeline:
            if step.type == 'TokenizeText':
                step.model_file = model_file
            if step.type == 'PackFields':
                step['keys'] = list(PRETRAIN_KEYS) + ['sample_idx']
    cfg.model.tokenizer_checkpoint = None  # a random BSQ tokenizer
    cfg.model.backbone.arch = dict(embed_dims=64, num_layers=2, num_heads=2,
                                   feedforward_channels=128)
    cfg.train_cfg.max_iters = max_iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.,
                                by_epoch=False)]
    cfg.optim_wrapper.optimizer.lr = 2e-3
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = checkpoint_interval
    cfg.custom_imports = dict(imports=['helpers.training_record'],
                              allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='TrainingRecordHook')]
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    return cfg


def _steps(work_dir):
    with open(osp.join(str(work_dir), 'record_rank0.json')) as f:
        return json.load(f)


def test_bsq_target_config_trains_and_resumes_exactly(demo_root, tmp_path):
    full = Runner.from_cfg(_cfg(demo_root, tmp_path / 'full', 10, 5))
    full.train()
    record = _steps(tmp_path / 'full')
    losses = [s['losses'] for s in record['steps']]
    for key in ('acc_mim_image', 'acc_bit_mim_image', 'acc_bit_mim_pair',
                'loss_mim_pair'):
        assert key in losses[0], key
    mim = [s['loss_mim_image'] for s in losses]
    assert sum(mim[-3:]) / 3 < sum(mim[:3]) / 3 - 0.02, mim
    bit_acc = [s['acc_bit_mim_image'] for s in losses]
    assert sum(bit_acc[-3:]) > sum(bit_acc[:3]), bit_acc

    cfg = _cfg(demo_root, tmp_path / 'resumed', 10, 5)
    cfg.resume = True
    cfg.load_from = str(tmp_path / 'full' / 'iter_5.pth')
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    rest = _steps(tmp_path / 'resumed')
    assert [s['iter'] for s in rest['steps']] == list(range(6, 11))
    assert rest['steps'] == record['steps'][5:]
    assert rest['weights'] == record['weights']


def test_demo_bsq_tokenizer_feeds_the_bsq_pretraining(demo_root, tmp_path):
    """The 48 px text-aligned tokenizer config trains (with its caption
    alignment) and its checkpoint is what the BSQ-target config loads."""
    cfg = Config.fromfile(osp.join(
        osp.dirname(CONFIG), 'bsqvit-text_vit-tiny-p8_demo-tokenizer.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(batch_size=4, num_workers=0,
                           persistent_workers=False)
        cfg[loader].dataset.data_root = demo_root
        for step in cfg[loader].dataset.pipeline:
            if step.type == 'TokenizeText':
                step.model_file = osp.join(demo_root, 'text_spm.model')
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.,
                                by_epoch=False)]
    cfg.default_hooks.checkpoint.interval = 2
    cfg.custom_hooks = []
    cfg.work_dir = str(tmp_path / 'tokenizer')
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.message_hub.get_scalar(
        'train/loss_contrastive').current() > 0
    assert runner.model.encoder.patch_grid == (6, 6)

    pretrain = Config.fromfile(CONFIG)
    pretrain.model.tokenizer_checkpoint = str(tmp_path / 'tokenizer' /
                                              'iter_2.pth')
    from mmvlp.registry import MODELS
    model = MODELS.build(pretrain.model)
    for key, value in runner.model.state_dict().items():
        assert torch.equal(model.tokenizer.state_dict()[key], value), key
    assert model.mim_head.num_bits == 18


BSQ_CONFIG = """
default_scope = 'mmvlp'
model = dict(
    type='BSQViT',
    encoder=dict(arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                           feedforward_channels=32), img_size=48,
                 patch_size=16),
    quantizer=dict(type='BinarySphericalQuantizer', code_dims=20,
                   group_size=5),
    decoder=dict(arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                           feedforward_channels=32)))
"""


def test_precomputed_bsq_ids_equal_online_targets(tmp_path):
    """Ids written by tools/tokenize_images.py with a BSQ tokenizer give the
    pretraining the same targets (and loss) as the tokenizer run online."""
    import importlib.util

    import numpy as np
    from mmengine.config import Config as MMConfig

    from mmvlp.datasets import make_demo_dataset
    from mmvlp.registry import MODELS
    make_demo_dataset(str(tmp_path / 'data'), num_train=3, num_val=0,
                      size=48)
    config = tmp_path / 'bsq.py'
    config.write_text(BSQ_CONFIG)
    torch.manual_seed(0)
    tokenizer = MODELS.build(MMConfig.fromfile(str(config)).model)
    checkpoint = tmp_path / 'bsq.pth'
    torch.save({'state_dict': tokenizer.state_dict()}, checkpoint)
    spec = importlib.util.spec_from_file_location(
        'tokenize_images', osp.join(osp.dirname(__file__), '..', 'tools',
                                    'tokenize_images.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'tokens'
    images = tmp_path / 'data' / 'images' / 'train'
    assert tool.main([str(config), str(checkpoint), '--data', str(images),
                      '--out', str(out)]) == 0
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['vocab_size'] == 2**20
    assert meta['id_bit_order'] == 'big-endian'
    shard = np.load(out / 'shard_00000.npz')
    ids = torch.from_numpy(shard['ids']).long()
    assert ids.shape == (3, 3, 3) and int(ids.max()) < 2**20

    backbone = dict(BACKBONE, img_size=48, patch_size=16)
    head = dict(type='FactorizedTokenHead', group_size=5)
    online = BEiT3Pretrain(backbone, tokenizer=MMConfig.fromfile(
        str(config)).model, tokenizer_checkpoint=str(checkpoint),
        mim_head=head).eval()
    offline = BEiT3Pretrain(backbone, visual_vocab_size=2**20,
                            mim_head=head).eval()
    offline.load_state_dict(online.state_dict(), strict=False)
    from PIL import Image
    raw = torch.stack([
        torch.from_numpy(np.array(Image.open(p).convert('RGB'))).permute(
            2, 0, 1).float() for p in shard['paths']])
    mask = torch.zeros(3, 3, 3, dtype=torch.bool)
    mask[:, 1:, :2] = True
    batch = dict(images=raw / 255., vision_mask=mask)
    with torch.no_grad():
        a = online(dict(image=dict(batch, tokenizer_images=raw)))
        b = offline(dict(image=dict(batch, visual_tokens=ids)))
    assert torch.equal(online.tokenizer.encode(raw), ids)
    for key in ('loss_mim_image', 'acc_mim_image', 'acc_bit_mim_image',
                'acc_group_mim_image'):
        torch.testing.assert_close(a[key], b[key])
