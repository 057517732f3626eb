# What the BEiT-3 + SimpleFPN COCO recipes (Mask R-CNN and Cascade Mask R-CNN,
# base and large) share apart from the detector: mmdet's LSJ-1024 data and
# 100-epoch schedule, ViTDet's test-time input, AdamW with layer-wise lr decay
# under mixed precision, batch 64 (16 GPUs x 4). The configs next to this
# folder add mmdet's detector base and the BEiT-3 backbone + SimpleFPN neck.
_base_ = 'mmdet::common/lsj-100e_coco-instance.py'
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

image_size = (1024, 1024)

# ViTDet's test-time input: resize to fit 1024 and pad to 1024x1024.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW with layer-wise lr decay over the backbone (ViTDet: 0.7 for base).
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='mmvlp.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7),
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))
# 25 epochs over the base's 4x repeated COCO = 100 epochs; the lr drops at
# epochs 88 and 96 (ViTDet: 88.9% and 96.3% of training).
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=250),
    dict(
        type='MultiStepLR',
        begin=0,
        end={{_base_.max_epochs}},
        by_epoch=True,
        milestones=[22, 24],
        gamma=0.1)
]
auto_scale_lr = dict(base_batch_size=64)
