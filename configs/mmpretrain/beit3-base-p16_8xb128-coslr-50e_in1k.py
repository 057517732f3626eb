# BEiT-3 base fine-tuned on ImageNet-1k at 224 (mmpretrain's ImageClassifier
# as mmvlp.BEiT3ImageClassifier, which also loads the official files).
#
# The official recipe, microsoft/unilm beit3/get_started/
# get_started_for_image_classification.md and run_beit3_finetuning.py:
#   --layer_decay 0.65 --lr 7e-4 --batch_size 128 (x 8 GPUs = 1024)
#   --epochs 50 --warmup_epochs 5 --drop_path 0.15 --weight_decay 0.05
#   --mixup 0.8 --cutmix 1.0 (mixup_prob 1.0, switch_prob 0.5)
#   defaults: AdamW betas (0.9, 0.999), eps 1e-8, no gradient clipping,
#   warmup_lr 1e-6, min_lr 1e-6 (cosine), label_smoothing 0.1,
#   RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, bicubic, ImageNet
#   mean/std; evaluation resizes the short side to 224 (crop_pct 1.0) and
#   centre-crops 224. Reported top-1: 85.4 (base).
# Model (modeling_finetune.BEiT3ForImageClassification): no final norm
# (normalize_output=False), mean of the patch tokens -> LayerNorm (fc_norm)
# -> Linear (initial weights x 0.001); no weight decay for 1-D parameters,
# positions and the CLS token.
#
# Train:  tools/dist_train.sh configs/mmpretrain/beit3-base-p16_8xb128-coslr-50e_in1k.py 8
# Test:   tools/dist_test.sh  configs/mmpretrain/beit3-base-p16_8xb128-coslr-50e_in1k.py CKPT 8
# Pretrained weights: an mmvlp pretraining checkpoint or an official one
# (as downloaded, or converted with tools/model_converters/
# beit3_unilm_to_mmvlp.py; set model.backbone.init_cfg.checkpoint).
# The released fine-tuned file beit3_base_patch16_224_in1k.pth evaluates
# as it is: tools/test.py THIS_CONFIG beit3_base_patch16_224_in1k.pth
# (docs/model_zoo.md).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

pretrained = 'checkpoints/beit3_base_patch16_224_mmvlp.pth'
model = dict(
    type='mmvlp.BEiT3ImageClassifier',
    backbone=dict(
        type='mmvlp.BEiT3',
        arch='base',
        img_size=224,
        patch_size=16,
        layout='decoupled',
        vision_only=True,          # text parts are dropped at load (logged)
        final_norm=False,          # normalize_output=False
        out_type='avg_featmap',    # mean of the patch tokens
        drop_path_rate=0.15,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=None,
    head=dict(
        type='mmvlp.BEiT3ClsHead',  # fc_norm (LayerNorm) + Linear
        num_classes=1000,
        in_channels=768,
        init_scale=0.001,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

# Data: the swin-224 base pipeline is timm's create_transform as the recipe
# uses it (bicubic RandomResizedCrop, flip, RandAugment m9 mstd0.5
# increasing, random erasing 0.25); the test resize follows crop_pct=1.0.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, pin_memory=True)
val_dataloader = dict(batch_size=128, pin_memory=True,
                      dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# Optimisation: layer-wise lr decay through the Multiway backbone.
lr = 7e-4
min_lr = 1e-6
warmup_lr = 1e-6
max_epochs = 50
warmup_epochs = 5
# Mixed precision as the official recipe (fp16 autocast + loss scaling
# there, on V100s; bf16 here, which needs no loss scaling).
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(
        type='AdamW', lr=lr, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    constructor='mmvlp.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))
# Ratios, so every layer-decay group warms up from and decays to its own
# scaled bound, as the reference does (lr * lr_scale throughout).
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2,
                    save_best='auto'))
randomness = dict(seed=42)
