# UPerNet + auxiliary FCN head on ADE20K (512x512 crops) with a BEiT-3 base
# backbone: four stride-16 maps from layers 3, 5, 7, 11 rescaled to strides
# 4-32 by mmseg's Feature2Pyramid, AdamW with layer-wise lr decay (mmseg's
# BEiT recipe: lr 3e-5, decay 0.9), 160k iterations, batch 16 (8 GPUs x 2).
#
# Weights: convert the official checkpoint first,
#   python tools/model_converters/beit3_unilm_to_mmvlp.py \
#       beit3_base_patch16_224.pth checkpoints/beit3_base_patch16_224_mmvlp.pth
# (mmvlp pretraining checkpoints: add prefix='backbone.' to init_cfg). The
# 224 position table is resized to 512 on load.
#   python tools/train.py CONFIG   |   tools/dist_train.sh CONFIG 8
#   python tools/test.py CONFIG CHECKPOINT   (mIoU by mmseg's IoUMetric)
_base_ = [
    'mmseg::_base_/models/upernet_beit.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

crop_size = (512, 512)
pretrained = 'checkpoints/beit3_base_patch16_224_mmvlp.pth'

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmvlp.BEiT3',
        vision_only=True,
        arch='base',
        img_size=crop_size,
        patch_size=16,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        final_norm=False,
        drop_path_rate=0.1,
        dynamic_img_size=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# Mixed precision as BEiT's segmentation recipes (fp16 there; bf16 here,
# which needs no loss scaling).
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    constructor='mmvlp.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
    optimizer=dict(
        type='AdamW', lr=3e-5, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        begin=1500,
        end=160000,
        eta_min=0.0,
        by_epoch=False)
]
train_dataloader = dict(batch_size=2, pin_memory=True)
val_dataloader = dict(batch_size=1, pin_memory=True)
test_dataloader = val_dataloader
