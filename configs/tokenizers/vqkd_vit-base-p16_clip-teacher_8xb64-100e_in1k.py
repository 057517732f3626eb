# VQ-KD tokenizer, BEiT v2 recipe: ViT-B/16 encoder, 8192 x 32 normalised EMA
# codebook, 3-layer decoder regressing a frozen CLIP ViT-B/16 teacher's patch
# features; AdamW (0.9, 0.99), wd 1e-4, lr 2e-4 for batch 512, 10 warm-up
# epochs, cosine to 1e-5, 100 epochs on ImageNet-1k.
#
# The teacher weights are not downloaded: put mmpretrain's CLIP ViT-B/16
# checkpoint (vit-base-p16_clip-openai-pre_3rdparty) at `teacher_checkpoint`.
# FrozenTeacher refuses to train without it. Here the teacher target is its
# 768-d patch features (BEiT v2 regresses CLIP's 512-d projected space).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/imagenet_raw.py',
]
teacher_checkpoint = 'checkpoints/vit-base-p16_clip-openai-pre_3rdparty.pth'
clip_mean = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
clip_std = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]

model = dict(
    type='VQKD',
    encoder=dict(arch='base', img_size=224, patch_size=16),
    quantizer=dict(type='NormEMAVectorQuantizer', num_codes=8192,
                   code_dims=32, decay=0.99, beta=1.0, kmeans_init=True),
    decoder=dict(arch=dict(embed_dims=768, num_layers=3, num_heads=12,
                           feedforward_channels=3072)),
    target=dict(
        type='FrozenTeacher',
        out_dims=768,
        mean=clip_mean,
        std=clip_std,
        model=dict(
            type='mmpretrain.VisionTransformer',
            arch='b',
            img_size=224,
            patch_size=16,
            pre_norm=True,
            out_type='featmap',
            init_cfg=dict(type='Pretrained', checkpoint=teacher_checkpoint,
                          prefix='backbone.'))),
    mean=clip_mean,
    std=clip_std)

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.99),
                   weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10,
         end=100, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=10)
val_cfg = dict()
test_cfg = dict()
val_evaluator = dict(type='CodebookUsage')
test_evaluator = val_evaluator
auto_scale_lr = dict(base_batch_size=512)

custom_hooks = [
    dict(type='CodebookHealthHook', interval=200),
    dict(type='TokenizerVisualizationHook', num_images=8),
]
default_hooks = dict(checkpoint=dict(interval=5))
