# UPerNet + auxiliary FCN head with the demo-pretrained tiny BEiT-3
# (configs/demo/beit3-tiny-p8_demo-pretrain.py: patch 8, 48x48 images) on
# the generated ADE20K-format shapes dataset. The maps of layers 0-3
# (stride 8) go to strides 2, 4, 8, 16 through Feature2Pyramid: the strides
# follow the patch size. Labels as in ADE20K (0 ignored, reduce_zero_label);
# classes: background and the four shapes. Used by the tests and the
# transfer demo.
#
#   python tools/data/make_demo_dense_data.py ade data/demo_ade
#   python tools/train.py configs/mmseg/THIS.py
#   python tools/test.py configs/mmseg/THIS.py work_dirs/THIS/iter_300.pth
# From scratch (same budget): add
#   --cfg-options model.backbone.init_cfg=None
_base_ = [
    'mmseg::_base_/models/upernet_beit.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

data_root = 'data/demo_ade/'
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle', 'stripe'),
    palette=[[128, 128, 128], [220, 40, 40], [40, 170, 60], [40, 80, 220],
             [235, 210, 40]])
crop_size = (48, 48)
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _base_.demo_vision_backbone,
        _delete_=True,
        img_size=crop_size,
        out_type='featmap',
        out_indices=(0, 1, 2, 3),
        dynamic_img_size=True),
    neck=dict(embed_dim=192, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
    decode_head=dict(
        in_channels=[192, 192, 192, 192],
        channels=64,
        num_classes=5,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=192, channels=32, num_classes=5, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))

demo_dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=crop_size,
        ratio_range=(0.75, 1.25),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        **demo_dataset,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **demo_dataset,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='mmvlp.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75),
    optimizer=dict(
        type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30,
         end=max_iters)
]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
