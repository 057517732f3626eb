"""configs/mmpretrain: every config builds; the tiny demo config fine-tunes a
checkpoint of mmvlp pretraining through tools/train.py and evaluates it
with mmpretrain's Accuracy through tools/test.py, on generated data."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from helpers.transfer import demo_pretrain_checkpoint
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmvlp.datasets import make_demo_dataset
from mmvlp.datasets.demo_classification import (DEMO_CLS_CLASSES,
                                                largest_attribute,
                                                largest_shape,
                                                write_demo_classification)
from mmvlp.datasets.demo_data import COLORS

ROOT = osp.join(osp.dirname(__file__), '..')
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'mmpretrain', '*.py')))
TINY = osp.join(ROOT, 'configs', 'mmpretrain', 'beit3-tiny-p8_demo-cls.py')


def _build(cfg):
    from mmengine.utils import import_modules_from_strings
    from mmpretrain.registry import MODELS
    init_default_scope(cfg.default_scope)
    import_modules_from_strings(**cfg.custom_imports)
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    backbone = cfg.model.backbone
    assert backbone.type == 'mmvlp.BEiT3' and backbone.vision_only
    assert backbone.init_cfg.prefix == 'backbone.'
    backbone.init_cfg = None
    with torch.device('meta'):
        model = _build(cfg)
    assert type(model.backbone).__name__ == 'BEiT3'
    assert type(model.head).__name__ == 'BEiT3ClsHead'
    assert model.head.fc.in_features == model.backbone.embed_dims
    if 'demo' not in path:
        # Mixed precision, as the official recipe.
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'
    # mmvlp's AmpOptimWrapper builds on a CPU-only host too (bf16 where the
    # CPU has bf16 units, fp32 elsewhere).
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = optim_wrapper.optimizer.param_groups
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    layers = model.backbone.num_layers
    assert {g['layer_depth'] for g in groups} == set(range(layers + 2))
    for group in groups:
        assert group['lr_scale'] == pytest.approx(
            rate**(layers + 1 - group['layer_depth']))


@pytest.mark.parametrize('name,arch,lr,decay,drop_path', [
    ('beit3-base-p16_8xb128-coslr-50e_in1k.py', 'base', 7e-4, 0.65, 0.15),
    ('beit3-large-p16_8xb128-coslr-50e_in1k.py', 'large', 2e-4, 0.8, 0.25),
])
def test_imagenet_recipe(name, arch, lr, decay, drop_path):
    """The official recipe's hyper-parameters (see the config comments)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'mmpretrain', name))
    assert cfg.model.backbone.arch == arch
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.model.backbone.final_norm is False
    assert cfg.model.backbone.out_type == 'avg_featmap'
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay,
            optimizer.betas, optimizer.eps) == ('AdamW', lr, 0.05,
                                                (0.9, 0.999), 1e-8)
    assert 'clip_grad' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.paramwise_cfg == dict(layer_decay_rate=decay)
    assert cfg.train_dataloader.batch_size * 8 == 1024
    assert cfg.train_cfg.max_epochs == 50
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == cosine.begin == 5 and cosine.end == 50
    assert lr * warmup.start_factor == pytest.approx(1e-6)
    assert lr * cosine.eta_min_ratio == pytest.approx(1e-6)
    assert [a.type for a in cfg.model.train_cfg.augments] == ['Mixup',
                                                              'CutMix']
    assert cfg.model.head.loss.label_smooth_val == 0.1


def test_largest_shape_labels():
    words = ['large', 'red', 'circle', 'top', 'left']
    small = ['small', 'blue', 'square', 'bottom', 'right']
    assert largest_shape(words) == 'circle'
    assert largest_shape(small + words) == 'circle'
    assert largest_shape(small + ['small', 'red', 'triangle', 'top',
                                  'left']) is None
    assert largest_shape(words + ['large', 'green', 'circle', 'top',
                                  'left']) == 'circle'
    with pytest.raises(ValueError, match='5 words per shape'):
        largest_shape(['large', 'red'])


def test_largest_colour_labels(tmp_path):
    words = ['large', 'red', 'circle', 'top', 'left']
    small = ['small', 'blue', 'square', 'bottom', 'right']
    assert largest_attribute(small + words, 'color') == 'red'
    assert largest_attribute(words + ['large', 'red', 'square', 'top',
                                      'left'], 'color') == 'red'
    assert largest_attribute(words + ['large', 'blue', 'circle', 'top',
                                      'left'], 'color') is None
    with pytest.raises(ValueError, match="Unknown label 'size'"):
        largest_attribute(words, 'size')
    make_demo_dataset(str(tmp_path), num_train=20, num_val=4, size=32)
    summary = write_demo_classification(str(tmp_path), label='color')
    assert list(summary['train']['classes']) == list(COLORS)
    with open(tmp_path / 'captions_train.jsonl') as f:
        records = {r['image']: r for r in map(json.loads, f)}
    lines = (tmp_path / 'cls_train.txt').read_text().split()
    for name, label in zip(lines[::2], lines[1::2]):
        words = records[name]['content_words']
        assert list(COLORS)[int(label)] == largest_attribute(words, 'color')
    assert len(lines) // 2 == summary['train']['kept']


@pytest.mark.parametrize('label,config,classes', [
    ('shape', TINY, DEMO_CLS_CLASSES),
    ('color', TINY.replace('demo-cls', 'demo-cls-colors'), tuple(COLORS))])
def test_demo_configs_match_their_labels(label, config, classes):
    cfg = Config.fromfile(config)
    assert cfg.train_dataloader.dataset.metainfo['classes'] == classes
    assert cfg.val_dataloader.dataset.metainfo['classes'] == classes
    assert cfg.model.head.num_classes == len(classes)
    assert cfg.data_preprocessor.num_classes == len(classes)


@pytest.fixture(scope='module')
def cls_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_cls')
    make_demo_dataset(str(root), num_train=24, num_val=16, size=48, seed=1)
    summary = write_demo_classification(str(root))
    assert summary['val']['kept'] + summary['val']['skipped'] == 16
    return str(root)


@pytest.fixture(scope='module')
def pretrain_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('pretrain') / 'iter_900.pth')
    demo_pretrain_checkpoint(path)
    return path


def _run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    result = subprocess.run([sys.executable] + args, cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[
        -3000:]
    return result.stdout + result.stderr


def test_tiny_config_trains_and_tests_with_tools(cls_root, pretrain_checkpoint,
                                                 tmp_path):
    loader = ['num_workers=0', 'persistent_workers=False']
    options = [
        f'model.backbone.init_cfg.checkpoint={pretrain_checkpoint}',
        f'train_dataloader.dataset.data_root={cls_root}',
        f'val_dataloader.dataset.data_root={cls_root}',
        f'test_dataloader.dataset.data_root={cls_root}',
        'train_dataloader.batch_size=8', 'train_cfg.max_iters=1',
        'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
    ] + [f'{split}_dataloader.{opt}' for split in ('train', 'val', 'test')
         for opt in loader]
    work_dir = tmp_path / 'work'
    log = _run([osp.join(ROOT, 'tools', 'train.py'), TINY, '--work-dir',
                str(work_dir), '--cfg-options'] + options, ROOT)
    # The pretraining checkpoint was loaded: text dropped in one line.
    assert len(re.findall(r'dropped \d+ text-only tensors', log)) == 1
    assert 'Layer-wise lr decay 0.75 over backbone (BEiT3, 4 layers)' in log
    loss = re.search(r'Iter\(train\) \[1/1\].*?loss: ([\d.]+)', log)
    assert loss and float(loss.group(1)) > 0
    assert re.search(r'Iter\(val\) \[\d+/\d+\].*accuracy/top1: [\d.]+', log)
    checkpoint = work_dir / 'iter_1.pth'
    assert checkpoint.is_file()

    out = _run([osp.join(ROOT, 'tools', 'test.py'), TINY, str(checkpoint),
                '--work-dir', str(tmp_path / 'test'), '--cfg-options'] +
               [o for o in options if o.startswith('test_dataloader')],
               ROOT)
    top1 = float(re.search(r'^accuracy/top1: ([\d.]+)$', out, re.M).group(1))
    assert top1 == pytest.approx(_top1_by_hand(cls_root, checkpoint),
                                 abs=1e-3)
    assert len(DEMO_CLS_CLASSES) == 4


def _top1_by_hand(root, checkpoint):
    """Top-1 accuracy (%) of a checkpoint of the tiny config on the
    validation list, from images read and normalised here (BGR -> RGB,
    the config's mean and std) and the list's labels.

    It runs the same model forward as the tools, so it checks the tools'
    data path (loading, channel order, normalisation), the checkpoint and
    the metric, not the classifier itself (the backbone's outputs are
    checked in tests/test_beit3_backbone.py and the parity tests)."""
    import mmcv
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(TINY)
    cfg.model.backbone.init_cfg = None
    model = _build(cfg).eval()
    load_checkpoint(model, str(checkpoint), map_location='cpu', strict=True)
    mean = torch.tensor(cfg.data_preprocessor.mean).view(3, 1, 1)
    std = torch.tensor(cfg.data_preprocessor.std).view(3, 1, 1)
    with open(osp.join(root, 'cls_val.txt')) as f:
        entries = [line.split() for line in f if line.strip()]
    correct = 0
    for name, label in entries:
        image = mmcv.imread(osp.join(root, name))[..., ::-1].copy()
        x = (torch.from_numpy(image).permute(2, 0, 1).float() - mean) / std
        with torch.no_grad():
            logits = model(x[None], mode='tensor')
        correct += int(logits.argmax()) == int(label)
    assert entries
    return 100. * correct / len(entries)
