# The fine-tuning schedule of the vision-language demo configs
# (configs/demo/beit3-tiny-p8_demo-vl-*.py): 200 iterations, AdamW with
# layer-wise lr decay, linear warm-up then cosine, validation and one
# checkpoint at the end. Task configs change the optimizer's settings (the
# official recipes differ per task) and the loops they need.
_base_ = ['../default_runtime.py']

max_iters = 200
warmup_iters = 20
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
custom_hooks = [dict(type='DataSkipHook')]
