# Iteration-based schedule of the tiny tokenizer demos (CPU, minutes).
# Children that change `max_iters` must also restate `param_scheduler` and
# `train_cfg` (mmengine evaluates these values in this file).
_base_ = ['../default_runtime.py']

max_iters = 600
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.99),
                   weight_decay=1e-4),
    clip_grad=dict(max_norm=3.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=200)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=200))
log_processor = dict(by_epoch=False)
