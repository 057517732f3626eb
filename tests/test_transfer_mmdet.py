"""BEiT-3 in mmdet: the configs in configs/mmdet, mmdet's own Runner, datasets
and CocoMetric (pycocotools) on COCO-format data generated here."""
import json
import math
import os.path as osp
import re
import textwrap

import numpy as np
import pytest
import torch
from helpers.transfer import (REPO, config_path, loader_options, recipes,
                              stock_train_one_iter,
                              tiny_runner_from_demo_pretrain,
                              tools_train_then_test, train_recipe_one_iter,
                              train_recording_losses)
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope

from mmvlp.datasets import make_demo_coco

TINY = config_path(
    'mmdet', 'mask-rcnn_beit3-tiny-p8_simple-fpn_1xb8-300it_demo-shapes.py')
RECIPES = recipes('mmdet')


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_coco')
    make_demo_coco(str(root), num_train=16, num_val=8, seed=0)
    return str(root)


def _coco_metrics(metrics):
    keys = [f'coco/{kind}_mAP{suffix}' for kind in ('bbox', 'segm')
            for suffix in ('', '_50', '_75')]
    assert all(key in metrics for key in keys), sorted(metrics)
    for key in keys:
        assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= 1, key


def test_recipes_are_present():
    names = [osp.basename(p) for p in RECIPES]
    assert any(n.startswith('mask-rcnn_beit3-base') for n in names)
    assert any(n.startswith('cascade-mask-rcnn_beit3-base') for n in names)
    assert any(n.startswith('cascade-mask-rcnn_beit3-large') for n in names)


#: ViTDet's settings per backbone size (the paper's detector setup): layer
#: decay, global-attention blocks, drop path, activation checkpointing.
VITDET = dict(
    base=dict(decay=0.7, global_blocks=(2, 5, 8, 11), drop_path=0.1,
              with_cp=False, layers=12, dims=768),
    large=dict(decay=0.8, global_blocks=(5, 11, 17, 23), drop_path=0.4,
               with_cp=True, layers=24, dims=1024))


def _check_recipe_values(cfg, model, size):
    """AdamW lr 1e-4, wd 0.1, LSJ 100 epochs (25 x 4 repeats, lr / 10 at
    88 and 96), batch 16 x 4, and ViTDet's per-size values, in the config
    and in the built model and optimizer."""
    expected = VITDET[size]
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.betas,
            optimizer.weight_decay) == ('AdamW', 1e-4, (0.9, 0.999), 0.1)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == \
        expected['decay']
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr.base_batch_size == 64
    assert cfg.train_dataloader.dataset.type == 'RepeatDataset'
    assert cfg.train_dataloader.dataset.times == 4
    assert cfg.train_cfg.max_epochs == 25
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.end, steps.type) == ('LinearLR', 250,
                                                     'MultiStepLR')
    assert [4 * m for m in steps.milestones] == [88, 96]
    backbone = model.backbone
    assert (backbone.num_layers, backbone.embed_dims) == (
        expected['layers'], expected['dims'])
    assert tuple(i for i, layer in enumerate(backbone.layers)
                 if layer.attn.window_size == 0) == expected['global_blocks']
    assert backbone.layers[-1].drop_path.drop_prob == pytest.approx(
        expected['drop_path'])
    assert backbone.with_cp == expected['with_cp']
    # The learning rates the optimizer gets (AMP left out: it needs a GPU).
    from mmengine.optim import build_optim_wrapper
    wrapper = dict(cfg.optim_wrapper, type='OptimWrapper')
    optim = build_optim_wrapper(model, wrapper).optimizer
    lr_of = {id(p): group['lr'] for group in optim.param_groups
             for p in group['params']}
    decay, depth = expected['decay'], expected['layers'] + 1
    assert lr_of[id(backbone.patch_embed.proj.weight)] == pytest.approx(
        1e-4 * decay**depth)
    assert lr_of[id(backbone.layers[-1].ffn.vision.fc1.weight)] == \
        pytest.approx(1e-4 * decay)
    assert lr_of[id(next(model.neck.parameters()))] == pytest.approx(1e-4)


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_builds_full_size(path):
    """The recipes as written: mmdet's scope, BEiT-3 + SimpleFPN, LSJ at
    1024, window attention with global blocks, layer decay; ViTDet's
    values."""
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.type == 'mmvlp.BEiT3'
    assert cfg.model.neck.type == 'mmvlp.SimpleFPN'
    assert cfg.model.backbone.window_size == 14
    assert len(cfg.model.backbone.global_attn_indexes) == 4
    assert cfg.optim_wrapper.constructor == \
        'mmvlp.LayerDecayOptimWrapperConstructor'
    assert cfg.model.data_preprocessor.batch_augments[0].size == (1024, 1024)
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    backbone = model.backbone
    assert type(backbone).__name__ == 'BEiT3'
    assert backbone.patch_grid == (64, 64)
    windows = [layer.attn.window_size for layer in backbone.layers]
    assert windows.count(0) == 4 and windows.count(14) == len(windows) - 4
    assert model.neck.in_channels == [backbone.embed_dims // 4,
                                      backbone.embed_dims // 2,
                                      backbone.embed_dims, backbone.embed_dims]
    _check_recipe_values(cfg, model, 'large' if '-large-' in path else 'base')


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_trains_and_evaluates_on_tiny_data(path, coco_root, tmp_path):
    """One iteration of each recipe (narrow backbone, 64 px LSJ) and a full
    evaluation, through mmdet's Runner, CocoDataset and CocoMetric."""
    _coco_metrics(train_recipe_one_iter(path, coco_root, str(tmp_path)))


class _Predictions(Hook):

    def __init__(self):
        self.samples = []

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self.samples.extend(outputs)


def _coco_ap(ann_file, detections, iou_type):
    """AP, AP50, AP75 of COCO-format detections by pycocotools directly."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    coco = COCO(ann_file)
    evaluation = COCOeval(coco, coco.loadRes(detections), iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return list(evaluation.stats[:3])


def _detections(instances, image_id, category_ids):
    """COCO results (boxes ``[x, y, w, h]``, RLE masks) of predicted
    ``pred_instances`` (boxes ``x1, y1, x2, y2``)."""
    from pycocotools import mask as mask_util
    out = []
    for box, score, label, mask in zip(instances['bboxes'].tolist(),
                                       instances['scores'].tolist(),
                                       instances['labels'].tolist(),
                                       instances['masks']):
        rle = mask_util.encode(np.asfortranarray(
            mask.numpy().astype(np.uint8)))
        rle['counts'] = rle['counts'].decode()
        out.append(dict(image_id=image_id, category_id=category_ids[label],
                        bbox=[box[0], box[1], box[2] - box[0],
                              box[3] - box[1]],
                        score=score, segmentation=rle))
    return out


def _ground_truth_predictions(ann_file, classes, widen=1.):
    """Predictions made of the ground truth (score 1, the true masks), the
    boxes ``widen`` times wider (IoU ``1 / widen`` with the truth)."""
    from pycocotools.coco import COCO
    coco = COCO(ann_file)
    names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
    samples = []
    for image in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
        boxes = [[a['bbox'][0], a['bbox'][1],
                  a['bbox'][0] + a['bbox'][2] * widen,
                  a['bbox'][1] + a['bbox'][3]] for a in anns]
        samples.append(dict(
            img_id=image['id'], ori_shape=(image['height'], image['width']),
            pred_instances=dict(
                bboxes=torch.tensor(boxes).view(-1, 4),
                scores=torch.ones(len(anns)),
                labels=torch.tensor([classes.index(names[a['category_id']])
                                     for a in anns], dtype=torch.long),
                masks=torch.from_numpy(np.stack(
                    [coco.annToMask(a) for a in anns])).bool())))
    return samples


def test_tiny_mask_rcnn_runner_and_coco_metric(coco_root, tmp_path):
    """The tiny Mask R-CNN: a few iterations with finite losses, then the
    full validation with bbox and segm AP by mmdet's CocoMetric, equal to
    pycocotools run directly on the model's predictions; and on
    predictions built from the ground truth, the known APs. The backbone
    starts from a checkpoint of the demo pretraining."""
    runner = tiny_runner_from_demo_pretrain(TINY, coco_root, tmp_path)
    losses = train_recording_losses(runner)
    assert len(losses) == 3
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= \
        set(losses[0])
    predictions = _Predictions()
    runner.register_hook(predictions)
    metrics = runner.val_loop.run()
    _coco_metrics(metrics)
    assert osp.exists(osp.join(str(tmp_path), 'iter_3.pth'))

    ann_file = f'{coco_root}/annotations/instances_val2017.json'
    classes = list(runner.val_evaluator.dataset_meta['classes'])
    with open(ann_file) as f:
        ids = {c['name']: c['id'] for c in json.load(f)['categories']}
    category_ids = [ids[name] for name in classes]
    detections = [d for s in predictions.samples for d in _detections(
        s.pred_instances, s.img_id, category_ids)]
    assert len(predictions.samples) == 8 and detections
    for kind in ('bbox', 'segm'):
        expected = _coco_ap(ann_file, detections, kind)
        got = [metrics[f'coco/{kind}_mAP{s}'] for s in ('', '_50', '_75')]
        assert got == pytest.approx(expected, abs=6e-4), kind

    # Known answers: the truth itself, then boxes 1 / 0.58 times as wide
    # (IoU 0.58: matched at the thresholds 0.5 and 0.55 of ten, so AP 0.2,
    # AP50 1, AP75 0), masks always the true ones.
    evaluator = runner.val_evaluator
    for widen, bbox in ((1., [1., 1., 1.]), (1 / 0.58, [0.2, 1., 0.])):
        samples = _ground_truth_predictions(ann_file, classes, widen)
        evaluator.process(data_samples=samples)
        metrics = evaluator.evaluate(len(samples))
        assert [metrics[f'coco/bbox_mAP{s}'] for s in ('', '_50', '_75')] \
            == bbox
        assert [metrics[f'coco/segm_mAP{s}'] for s in ('', '_50', '_75')] \
            == [1., 1., 1.]


def test_tools_train_and_test(coco_root, tmp_path):
    """tools/train.py (from scratch) and tools/test.py run the mmdet config
    (mmdet's default scope) and report COCO AP."""
    work = str(tmp_path / 'work')
    data = loader_options(coco_root)
    ann = f'{coco_root}/annotations/instances_val2017.json'
    data += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
             'train_dataloader.batch_size=2', 'val_dataloader.batch_size=4',
             'test_dataloader.batch_size=4']
    stdout = tools_train_then_test(TINY, work, data)
    values = dict(re.findall(r'^(coco/\w+): (\S+)$', stdout, re.M))
    assert math.isfinite(float(values['coco/bbox_mAP']))
    assert math.isfinite(float(values['coco/segm_mAP']))


STOCK_USER_CONFIG = """
# A user's own config: mmdet's stock Mask R-CNN with only the backbone and
# the neck swapped, on the user's data (here the tiny generated COCO).
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmvlp.models'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvlp.BEiT3',
        arch='tiny',
        img_size=64,
        out_type='featmap',
        out_indices=(-1, ),
        final_norm=False,
        dynamic_img_size=True),
    neck=dict(
        _delete_=True,
        type='mmvlp.SimpleFPN',
        backbone_channel=192,
        out_channels=256,
        num_outs=5))

# The user's data.
data_root = '{root}/'
metainfo = dict(classes=('circle', 'square', 'triangle', 'stripe'))
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=pipeline))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1)
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=1))
"""


def test_stock_mmdet_config_with_beit3_trains(coco_root, tmp_path):
    """mmdet's own mask-rcnn_r50_fpn_1x_coco.py, backbone and neck swapped,
    in a fresh process through mmdet's own tools/train.py (mmvlp only comes
    in through custom_imports)."""
    stock_train_one_iter('mmdet', STOCK_USER_CONFIG.format(root=coco_root),
                         'mask-rcnn_beit3-tiny_simple-fpn_user.py', tmp_path)


def test_readme_mmdet_example():
    """The mmdet example of docs/transfer.md builds."""
    text = open(osp.join(REPO, 'docs', 'transfer.md')).read()
    block = re.search(r'```python\n(# my_project/configs/mask-rcnn.*?)```',
                      text, re.S).group(1)
    cfg = Config.fromfile(_write(block))
    assert cfg.model.backbone.type == 'mmvlp.BEiT3'
    assert cfg.model.neck.type == 'mmvlp.SimpleFPN'
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert type(model.neck).__name__ == 'SimpleFPN'


def _write(text):
    import tempfile
    handle = tempfile.NamedTemporaryFile('w', suffix='.py', delete=False)
    handle.write(textwrap.dedent(text))
    handle.close()
    return handle.name


def test_colour_demo_config_matches_its_data():
    """The transfer demo's detection config: the shapes config with the
    eight colours as categories (make_demo_coco(label='color'))."""
    from mmvlp.datasets.demo_data import object_classes
    cfg = Config.fromfile(TINY.replace('demo-shapes', 'demo-colors'))
    colours = object_classes('color')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.metainfo['classes'] == colours
        assert cfg[loader].dataset.data_root == 'data/demo_coco_colors/'
    for head in ('bbox_head', 'mask_head'):
        assert cfg.model.roi_head[head].num_classes == len(colours)
    assert cfg.val_evaluator.ann_file.startswith('data/demo_coco_colors/')
