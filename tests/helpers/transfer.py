"""Run mmdet / mmseg configs on the tiny generated datasets.

The recipe configs stay as they are except for what the tiny stand-in data
forces: where the data lives (and its class names), the input sizes, a
narrow and shallow backbone, and one-process CPU loaders. Everything else
(heads, losses, pipelines, optimizer constructor, schedulers, metrics) runs
as configured.
"""
import copy
import glob
import math
import os
import os.path as osp
import re
import subprocess
import sys
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmvlp.datasets import DEMO_DET_CLASSES, DEMO_SEG_CLASSES
from mmvlp.runtime import setup_launch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
SMALL_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2,
                  feedforward_channels=64)
# Recipe input sizes -> tiny ones (crop/scale/slide sizes of LSJ and ADE).
SIZES = {(1024, 1024): (64, 64), (512, 512): (64, 64), (640, 640): (64, 64),
         (2048, 512): (256, 64), (2560, 640): (256, 64),
         (341, 341): (32, 32), (426, 426): (32, 32)}
# Subprocesses: one thread, the repository importable.
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
HEAD_WIDTH_KEYS = ('in_channels', 'feat_channels', 'out_channels',
                   'conv_out_channels', 'channels', 'fc_out_channels')


def config_path(*parts: str) -> str:
    return osp.join(REPO, 'configs', *parts)


def recipes(toolbox: str) -> List[str]:
    """The full-size recipes of ``configs/<toolbox>``: every config there
    but the tiny demo ones (``*_demo-*``)."""
    return sorted(p for p in glob.glob(config_path(toolbox, '*.py'))
                  if '_demo-' not in osp.basename(p))


class LossRecorder(Hook):
    """A hook that keeps each training step's losses."""

    def __init__(self, store):
        self.store = store

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.store.append({k: float(torch.as_tensor(v).detach())
                           for k, v in outputs.items() if 'loss' in k})


def train_recipe_one_iter(path: str, data_root: str, work_dir: str) -> dict:
    """One iteration of a recipe (narrow backbone, tiny inputs) through the
    toolbox's Runner; checks layer-wise lr decay, returns the validation
    metrics."""
    cfg = prepare(path, data_root, work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    groups = runner.optim_wrapper.optimizer.param_groups
    assert len({g['lr'] for g in groups}) > 3  # layer-wise decay
    return runner.val_loop.run()


def tiny_runner_from_demo_pretrain(config: str, data_root: str,
                                   tmp_path) -> Runner:
    """The tiny demo config set up for ``max_iters=3``, its backbone loaded
    (and checked) from a checkpoint shaped like the demo pretraining's."""
    pretrained = demo_pretrain_checkpoint(str(tmp_path / 'pretrain.pth'))
    cfg = prepare(config, data_root, str(tmp_path), max_iters=3, shrink=False)
    cfg.model.backbone.init_cfg = dict(
        type='Pretrained', checkpoint=str(tmp_path / 'pretrain.pth'),
        prefix='backbone.')
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    torch.testing.assert_close(
        runner.model.backbone.layers[3].ffn.vision.fc2.weight,
        pretrained['layers.3.ffn.vision.fc2.weight'])
    return runner


def train_recording_losses(runner: Runner) -> List[dict]:
    """Train, returning each step's losses (checked finite)."""
    losses = []
    runner.register_hook(LossRecorder(losses), priority='LOWEST')
    runner.train()
    assert all(math.isfinite(v) for step in losses for v in step.values())
    return losses


def loader_options(data_root: str) -> List[str]:
    """``--cfg-options`` that point every loader at ``data_root`` with
    in-process loading."""
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    data = [f'{name}.dataset.data_root={data_root}/' for name in loaders]
    data += [f'{name}.num_workers=0' for name in loaders]
    data += [f'{name}.persistent_workers=False' for name in loaders]
    return data


def tools_train_then_test(config: str, work: str,
                          options: List[str]) -> str:
    """tools/train.py (2 iterations, from scratch), then tools/test.py on its
    checkpoint, in fresh processes; returns the test's stdout."""
    train = subprocess.run(
        [sys.executable, 'tools/train.py', config, '--work-dir', work,
         '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
         'model.backbone.init_cfg=None',
         'default_hooks.checkpoint.interval=2', *options],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    test = subprocess.run(
        [sys.executable, 'tools/test.py', config, osp.join(work, 'iter_2.pth'),
         '--work-dir', work, '--cfg-options', *options],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert test.returncode == 0, test.stderr[-3000:]
    return test.stdout


def stock_train_one_iter(toolbox: str, config_text: str, name: str,
                         tmp_path) -> None:
    """Write a user's config (``config_text``) and train it for one
    iteration in a fresh process through the toolbox's own tools/train.py,
    without mmvlp on the path (it only comes in through custom_imports)."""
    import importlib
    path = tmp_path / name
    path.write_text(config_text)
    package = importlib.import_module(toolbox)
    toolbox_train = osp.join(osp.dirname(package.__file__), '.mim', 'tools',
                             'train.py')
    env = dict(ENV)
    env.pop('PYTHONPATH')
    run = subprocess.run(
        [sys.executable, toolbox_train, str(path), '--work-dir',
         str(tmp_path / 'work')],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    log = run.stdout + run.stderr
    losses = re.findall(r'\(train\).*? loss: (\S+)', log)
    assert losses and math.isfinite(float(losses[0])), log[-2000:]
    assert osp.exists(tmp_path / 'work' / 'iter_1.pth')


def _map(obj, fn):
    """Apply ``fn`` to every dict/list/tuple value, depth first."""
    obj = fn(obj)
    if isinstance(obj, dict):
        return type(obj)({k: _map(v, fn) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)) and not isinstance(obj, str):
        return type(obj)(_map(v, fn) for v in obj)
    return obj


def _tiny_size(value):
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) for v in value) and tuple(value) in SIZES:
        return SIZES[tuple(value)]
    return value


def _datasets(loader: dict):
    """The dataset dicts of a loader (inside RepeatDataset & co. too)."""
    dataset = loader['dataset']
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return [dataset]


def use_tiny_data(cfg: Config, data_root: str, batch_size: int = 2) -> None:
    """Point the loaders and evaluators at the tiny data (in place)."""
    data_root = data_root.rstrip('/') + '/'
    toolbox = cfg.default_scope
    for name in LOADERS:
        loader = cfg[name]
        loader.update(batch_size=batch_size, num_workers=0,
                      persistent_workers=False)
        for dataset in _datasets(loader):
            dataset['data_root'] = data_root
            if toolbox == 'mmdet':
                dataset['metainfo'] = dict(classes=DEMO_DET_CLASSES)
            else:
                dataset.update(type='BaseSegDataset', img_suffix='.jpg',
                               seg_map_suffix='.png', reduce_zero_label=True,
                               metainfo=dict(classes=DEMO_SEG_CLASSES))
    for name in ('val_evaluator', 'test_evaluator'):
        if toolbox == 'mmdet':
            cfg[name]['ann_file'] = \
                data_root + 'annotations/instances_val2017.json'
    for name in LOADERS:
        cfg[name] = _map(cfg[name], _tiny_size)
    rpn = cfg.model.get('train_cfg', {}).get('rpn')
    if rpn is not None:
        # Jittered 64 px images can be smaller than the anchors.
        rpn['allowed_border'] = -1


def match_classes(cfg: Config) -> None:
    """Heads predict the tiny data's classes (in place)."""
    num = len(DEMO_DET_CLASSES if cfg.default_scope == 'mmdet' else
              DEMO_SEG_CLASSES)

    def fix(obj):
        if isinstance(obj, dict) and isinstance(obj.get('num_classes'), int):
            obj['num_classes'] = num
        return obj

    cfg.model = _map(cfg.model.to_dict(), fix)


def shrink_model(cfg: Config) -> None:
    """Tiny widths and sizes for a recipe's model (in place): a 4-layer,
    32-wide backbone without pretrained weights, narrow necks and heads."""
    model = _map(cfg.model.to_dict(), _tiny_size)
    backbone = model['backbone']
    outs = backbone.get('out_indices', -1)
    backbone.update(arch=dict(SMALL_ARCH), init_cfg=None,
                    out_indices=(0, 1, 2, 3) if isinstance(outs, (
                        list, tuple)) and len(outs) == 4 else (-1, ))
    if backbone.get('window_size'):
        backbone.update(window_size=2, global_attn_indexes=(1, 3))
    neck = model.get('neck') or {}
    if 'backbone_channel' in neck:  # SimpleFPN
        neck.update(backbone_channel=32, in_channels=[8, 16, 32, 32])
    if 'embed_dim' in neck:  # mmseg's Feature2Pyramid
        neck['embed_dim'] = 32

    def narrow(obj):
        if isinstance(obj, dict):
            for key in HEAD_WIDTH_KEYS:
                value = obj.get(key)
                if isinstance(value, int) and value >= 64:
                    obj[key] = 32
                elif isinstance(value, list) and all(
                        isinstance(v, int) and v >= 64 for v in value):
                    obj[key] = [32] * len(value)
            if obj.get('type') == 'RandomSampler' and obj.get('num', 0) > 64:
                obj['num'] = 64
        return obj

    for key, part in model.items():
        if key not in ('backbone', 'neck', 'data_preprocessor'):
            model[key] = _map(part, narrow)
    if 'out_channels' in neck:
        neck['out_channels'] = 32
    cfg.model = model


def prepare(config: str, data_root: str, work_dir: str,
            max_iters: int = 1, shrink: bool = True,
            options: Optional[dict] = None) -> Config:
    """Load a config and make it run ``max_iters`` iterations on the tiny
    data, then validate; what tools/train.py does for a CPU host included."""
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    use_tiny_data(cfg, data_root)
    match_classes(cfg)
    if shrink:
        shrink_model(cfg)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=max_iters)
    cfg.work_dir = work_dir
    cfg.default_hooks = copy.deepcopy(cfg.get('default_hooks', {}))
    cfg.default_hooks['logger'] = dict(type='LoggerHook', interval=1)
    cfg.default_hooks['checkpoint'] = dict(
        type='CheckpointHook', by_epoch=False, interval=max_iters)
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=0)
    cfg.launcher = 'none'
    setup_launch(cfg)  # as tools/train.py: fp32 instead of AMP on CPU
    return cfg


def demo_pretrain_checkpoint(path: str) -> dict:
    """Save a checkpoint shaped like the demo pretraining's (a
    ``BEiT3Pretrain`` with the backbone of
    configs/demo/beit3-tiny-p8_demo-pretrain.py, its MLM head and a 16-code
    MIM head) with random weights, as mmengine's Runner saves it; returns
    the backbone's state dict."""
    import torch
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

    from mmvlp.models.algorithms import BEiT3Pretrain
    backbone_cfg = Config.fromfile(
        config_path('demo', 'beit3-tiny-p8_demo-pretrain.py')).model.backbone
    torch.manual_seed(1)
    model = BEiT3Pretrain(backbone=backbone_cfg.to_dict(),
                          visual_vocab_size=16)
    save_checkpoint(dict(meta=dict(iter=1300),
                         state_dict=weights_to_cpu(model.state_dict())),
                    path)
    return model.backbone.state_dict()
