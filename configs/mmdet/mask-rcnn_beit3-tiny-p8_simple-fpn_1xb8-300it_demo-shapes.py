# Mask R-CNN with the demo-pretrained tiny BEiT-3 (configs/demo/
# beit3-tiny-p8_demo-pretrain.py: patch 8, 48x48 images) and the simple
# feature pyramid on the generated COCO-format shapes dataset. With patch 8
# the pyramid has strides 2, 4, 8, 16 (+ 32 for RPN): the strides follow
# the patch size. Used by the tests and the transfer demo.
#
#   python tools/data/make_demo_dense_data.py coco data/demo_coco
#   python tools/train.py configs/mmdet/THIS.py
#   python tools/test.py configs/mmdet/THIS.py work_dirs/THIS/iter_300.pth
# From scratch (same budget): add
#   --cfg-options model.backbone.init_cfg=None
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

data_root = 'data/demo_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle', 'stripe'))
image_size = (48, 48)
strides = [2, 4, 8, 16]
norm_cfg = dict(type='mmvlp.LN2d', requires_grad=True)

model = dict(
    data_preprocessor=dict(pad_size_divisor=16),
    backbone=dict(
        _base_.demo_vision_backbone,
        _delete_=True,
        img_size=image_size,
        out_type='featmap',
        out_indices=(-1, ),
        dynamic_img_size=True),
    neck=dict(
        _delete_=True,
        type='mmvlp.SimpleFPN',
        backbone_channel=192,
        in_channels=[48, 96, 192, 192],
        out_channels=64,
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        num_convs=2,
        anchor_generator=dict(scales=[4], strides=strides + [32])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64, featmap_strides=strides),
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            in_channels=64,
            conv_out_channels=32,
            fc_out_channels=256,
            norm_cfg=norm_cfg,
            num_classes=4),
        mask_roi_extractor=dict(out_channels=64, featmap_strides=strides),
        mask_head=dict(
            in_channels=64,
            conv_out_channels=32,
            norm_cfg=norm_cfg,
            num_classes=4)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomResize', scale=image_size, ratio_range=(0.75, 1.25),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
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
        type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=30,
         end=max_iters)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
