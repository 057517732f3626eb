"""BEiT-3 in mmseg: the configs in configs/mmseg, mmseg's own Runner, datasets
and IoUMetric on ADE20K-format data generated here."""
import math
import os.path as osp
import re

import numpy as np
import pytest
import torch
from helpers.transfer import (config_path, loader_options, recipes,
                              stock_train_one_iter,
                              tiny_runner_from_demo_pretrain,
                              tools_train_then_test, train_recipe_one_iter,
                              train_recording_losses)
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from PIL import Image

from mmvlp.datasets import DEMO_SEG_CLASSES, make_demo_ade

TINY = config_path(
    'mmseg', 'upernet_beit3-tiny-p8_1xb8-300it_demo-shapes-ade-48x48.py')
RECIPES = recipes('mmseg')


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_ade')
    make_demo_ade(str(root), num_train=16, num_val=8, seed=0)
    return str(root)


def _iou_metrics(metrics):
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert key in metrics, sorted(metrics)
        assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= 100, key


def test_recipes_are_present():
    names = [osp.basename(p) for p in RECIPES]
    for expected in ('upernet_beit3-base-p16_8xb2-160k_ade20k-512x512.py',
                     'upernet_beit3-base-p16_8xb2-160k_ade20k-640x640.py',
                     'upernet_beit3-large-p16_8xb1-amp-160k_ade20k-640x640.py'):
        assert expected in names


#: mmseg's BEiT UPerNet recipes per backbone size: lr, layer decay, drop
#: path, the four layers read, batch per GPU (8 GPUs), mixed precision
#: (mmseg's base recipe is fp32; mmvlp's trains in bf16 as BEiT's own
#: segmentation code trains in mixed precision: amp=True for both).
BEIT_UPERNET = dict(
    base=dict(lr=3e-5, decay=0.9, drop_path=0.1, out=(3, 5, 7, 11),
              batch=2, amp=True, layers=12),
    large=dict(lr=2e-5, decay=0.95, drop_path=0.2, out=(7, 11, 15, 23),
               batch=1, amp=True, layers=24))


def _check_recipe_values(cfg, model, size):
    """The values of mmseg's BEiT recipes in the config and in the built
    model and optimizer: AdamW (wd 0.05), 160k iterations, linear warm-up
    over 1500 then poly decay, and the per-size values."""
    expected = BEIT_UPERNET[size]
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.betas,
            optimizer.weight_decay) == ('AdamW', expected['lr'],
                                        (0.9, 0.999), 0.05)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == \
        expected['decay']
    assert (cfg.optim_wrapper.type == 'AmpOptimWrapper') == expected['amp']
    assert cfg.train_dataloader.batch_size == expected['batch']
    assert cfg.train_cfg.max_iters == 160000
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == (
        'LinearLR', 1e-6, 1500)
    assert (poly.type, poly.power, poly.begin, poly.end, poly.eta_min) == (
        'PolyLR', 1.0, 1500, 160000, 0.0)
    backbone = model.backbone
    assert backbone.num_layers == expected['layers']
    assert tuple(backbone.out_indices) == expected['out']
    assert backbone.layers[-1].drop_path.drop_prob == pytest.approx(
        expected['drop_path'])
    from mmengine.optim import build_optim_wrapper
    wrapper = dict(cfg.optim_wrapper, type='OptimWrapper')
    wrapper.pop('dtype', None)  # (AmpOptimWrapper's)
    optim = build_optim_wrapper(model, wrapper).optimizer
    lr_of = {id(p): group['lr'] for group in optim.param_groups
             for p in group['params']}
    lr, decay = expected['lr'], expected['decay']
    assert lr_of[id(backbone.patch_embed.proj.weight)] == pytest.approx(
        lr * decay**(expected['layers'] + 1))
    assert lr_of[id(backbone.layers[-1].ffn.vision.fc1.weight)] == \
        pytest.approx(lr * decay)
    assert lr_of[id(model.decode_head.conv_seg.weight)] == pytest.approx(lr)


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_builds_full_size(path):
    """The recipes as written: mmseg's scope, four BEiT-3 maps rescaled by
    mmseg's Feature2Pyramid, UPerNet + FCN heads, layer decay."""
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmseg'
    size = 640 if '640x640' in path else 512
    assert cfg.crop_size == (size, size)
    assert cfg.model.backbone.type == 'mmvlp.BEiT3'
    assert cfg.model.neck.type == 'Feature2Pyramid'
    assert cfg.model.auxiliary_head.type == 'FCNHead'
    assert cfg.optim_wrapper.constructor == \
        'mmvlp.LayerDecayOptimWrapperConstructor'
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    backbone = model.backbone
    assert backbone.patch_grid == (size // 16, size // 16)
    assert len(backbone.out_indices) == 4
    assert backbone.out_indices[-1] == backbone.num_layers - 1
    assert model.decode_head.in_channels == [backbone.embed_dims] * 4
    _check_recipe_values(cfg, model, 'large' if '-large-' in path else 'base')


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_trains_and_evaluates_on_tiny_data(path, ade_root, tmp_path):
    """One iteration of each recipe (narrow backbone, 64 px crops, sliding
    window test) and a full evaluation with mmseg's IoUMetric."""
    _iou_metrics(train_recipe_one_iter(path, ade_root, str(tmp_path)))


def _iou_by_hand(preds, labels, num_classes):
    """aAcc, mIoU and mAcc (%) of label maps (255: ignored), from one
    confusion count over all images; classes absent from both prediction
    and ground truth left out of the means."""
    intersect, area_pred, area_label = (np.zeros(num_classes)
                                        for _ in range(3))
    for pred, label in zip(preds, labels):
        valid = label != 255
        pred, label = pred[valid], label[valid]
        for c in range(num_classes):
            intersect[c] += np.sum((pred == c) & (label == c))
            area_pred[c] += np.sum(pred == c)
            area_label[c] += np.sum(label == c)
    union = area_pred + area_label - intersect
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = intersect / union
        acc = intersect / area_label
    return dict(aAcc=100 * intersect.sum() / area_label.sum(),
                mIoU=100 * np.nanmean(iou), mAcc=100 * np.nanmean(acc))


class _Predictions(Hook):

    def __init__(self):
        self.samples = []

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self.samples.extend(outputs)


def test_tiny_upernet_runner_and_iou_metric(ade_root, tmp_path):
    """The tiny UPerNet on four BEiT-3 maps: a few iterations with finite
    losses, then the full validation by mmseg's IoUMetric, whose numbers
    equal a count by hand of the predictions against the label files
    (ADE's reduce_zero_label: 0 ignored, the rest shifted down by one). The
    backbone starts from a checkpoint of the demo pretraining."""
    runner = tiny_runner_from_demo_pretrain(TINY, ade_root, tmp_path)
    assert runner.model.backbone.out_indices == [0, 1, 2, 3]
    losses = train_recording_losses(runner)
    assert len(losses) == 3
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses[0])
    predictions = _Predictions()
    runner.register_hook(predictions)
    metrics = runner.val_loop.run()
    _iou_metrics(metrics)
    assert osp.exists(osp.join(str(tmp_path), 'iter_3.pth'))
    samples = predictions.samples
    assert len(samples) == 8
    labels = []
    for sample in samples:
        raw = np.array(Image.open(sample.seg_map_path)).astype(np.int64)
        labels.append(np.where(raw == 0, 255, raw - 1))
    preds = [s.pred_sem_seg.data[0].numpy() for s in samples]
    assert all(p.shape == label.shape for p, label in zip(preds, labels))
    expected = _iou_by_hand(preds, labels, len(DEMO_SEG_CLASSES))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=0.006), key
    assert 0 < expected['mIoU'] < 100  # neither empty nor trivial

    # A hand-built case: class 0 IoU 1/2, class 1 IoU 1/2, one ignored
    # pixel: mIoU 50, aAcc 2/3, mAcc (1/2 + 1) / 2.
    label = torch.tensor([[0, 0], [1, 255]])
    pred = torch.tensor([[0, 1], [1, 1]])
    evaluator = runner.val_evaluator
    evaluator.process(data_samples=[dict(pred_sem_seg=dict(data=pred[None]),
                                         gt_sem_seg=dict(data=label[None]))])
    metrics = evaluator.evaluate(1)
    assert (metrics['mIoU'], metrics['aAcc'], metrics['mAcc']) == (
        50.0, pytest.approx(66.67), 75.0)


def test_tools_train_and_test(ade_root, tmp_path):
    """tools/train.py (from scratch) and tools/test.py run the mmseg config
    (mmseg's default scope) and report mIoU."""
    work = str(tmp_path / 'work')
    data = loader_options(ade_root) + ['train_dataloader.batch_size=4']
    stdout = tools_train_then_test(TINY, work, data)
    values = dict(re.findall(r'^(mIoU|aAcc): (\S+)$', stdout, re.M))
    assert math.isfinite(float(values['mIoU']))


STOCK_USER_CONFIG = """
# A user's own config: mmseg's stock UPerNet with the backbone swapped for
# BEiT-3, a neck that rescales its four maps, and head widths to match, on
# the user's data (here the tiny generated ADE-format set).
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmvlp.models'], allow_failed_imports=False)

crop_size = (64, 64)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmvlp.BEiT3',
        arch='tiny',
        img_size=crop_size,
        out_type='featmap',
        out_indices=(0, 1, 2, 3),
        final_norm=False,
        dynamic_img_size=True),
    neck=dict(type='Feature2Pyramid', embed_dim=192, rescales=[4, 2, 1, 0.5],
              norm_cfg=dict(type='BN', requires_grad=True)),
    decode_head=dict(in_channels=[192, 192, 192, 192]),
    auxiliary_head=dict(in_channels=192))

# The user's data.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='{root}', pipeline=train_pipeline))
train_cfg = dict(max_iters=1)
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=1))
"""


def test_stock_mmseg_config_with_beit3_trains(ade_root, tmp_path):
    """mmseg's own upernet_r50_4xb4-160k_ade20k-512x512.py with BEiT-3 and a
    neck, in a fresh process through mmseg's own tools/train.py (mmvlp only
    comes in through custom_imports)."""
    stock_train_one_iter('mmseg', STOCK_USER_CONFIG.format(root=ade_root),
                         'upernet_beit3-tiny_user.py', tmp_path)


def test_colour_demo_config_matches_its_data():
    """The transfer demo's segmentation config: background and the eight
    colours (make_demo_ade(label='color'))."""
    from mmvlp.datasets.demo_dense import demo_seg_classes, demo_seg_palette
    cfg = Config.fromfile(config_path(
        'mmseg', 'upernet_beit3-tiny-p8_1xb8-600it_demo-colors-ade-48x48.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        metainfo = cfg[loader].dataset.metainfo
        assert metainfo['classes'] == demo_seg_classes('color')
        assert metainfo['palette'] == demo_seg_palette('color')
        assert cfg[loader].dataset.data_root == 'data/demo_ade_colors/'
    assert cfg.model.decode_head.num_classes == 9
    assert cfg.model.auxiliary_head.num_classes == 9
