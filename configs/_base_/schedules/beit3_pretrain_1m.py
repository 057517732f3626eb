# The BEiT-3 paper's optimisation: AdamW (0.9, 0.98), eps 1e-6, peak lr 1e-3,
# 10k warm-up iterations then cosine decay, weight decay 0.05, gradient
# clipping 3.0, 1M iterations; batch 6144 = 2048 images + 2048 texts + 2048
# pairs (GPUs x per-GPU batch per source x accumulative_counts).
_base_ = ['../default_runtime.py']

max_iters = 1000000
warmup_iters = 10000
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
                   weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            'cls_token': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'pos_embed': dict(decay_mult=0.),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='MultiSourceTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=5))
log_processor = dict(by_epoch=False)
