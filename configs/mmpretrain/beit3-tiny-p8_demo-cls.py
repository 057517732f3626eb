# Fine-tune the demo-pretrained tiny BEiT-3 (configs/demo/
# beit3-tiny-p8_demo-pretrain.py) on generated shape classification: the
# class of a 48 x 48 scene is the shape of its largest object (circle,
# square, triangle, stripe). The same recipe as the ImageNet configs (layer
# decay, no final norm, mean-pooled patches -> fc_norm -> Linear, label
# smoothing), sized for 2 CPU cores.
#
#   python tools/data/make_demo_cls_data.py --out data/demo_cls
#   python tools/train.py configs/mmpretrain/beit3-tiny-p8_demo-cls.py
#   python tools/test.py configs/mmpretrain/beit3-tiny-p8_demo-cls.py \
#       work_dirs/beit3-tiny-p8_demo-cls/iter_300.pth
# From scratch (same budget): add
#   --cfg-options model.backbone.init_cfg=None
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

data_root = 'data/demo_cls'
classes = ('circle', 'square', 'triangle', 'stripe')
image_size = 48

data_preprocessor = dict(
    num_classes=len(classes),
    mean=[123.675, 116.28, 103.53],   # as the demo pretraining
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    type='ImageClassifier',
    backbone=dict(_base_.demo_vision_backbone, out_type='avg_featmap'),
    neck=None,
    head=dict(
        type='mmvlp.BEiT3ClsHead',
        num_classes=len(classes),
        in_channels=192,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        topk=(1, )))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=image_size,
         crop_ratio_range=(0.7, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
dataset = dict(type='CustomDataset', data_root=data_root, data_prefix='',
               metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(ann_file='cls_train.txt', pipeline=train_pipeline,
                 **dataset))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(ann_file='cls_val.txt', pipeline=test_pipeline, **dataset))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_iters = 300
warmup_iters = 30
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    constructor='mmvlp.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=100)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100,
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
