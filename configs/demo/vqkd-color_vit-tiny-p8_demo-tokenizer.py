# Step 1 of `make demo`: train the demo's visual tokenizer (12 colour codes)
# on the generated 48 px images.
_base_ = [
    '../_base_/models/vqkd-color-tiny-p8_demo.py',
    '../_base_/datasets/demo_images_raw.py',
    '../_base_/schedules/tokenizer_demo_cpu.py',
]
model = {{_base_.demo_tokenizer}}
data_root = 'data/demo_pretrain'
image_size = 48
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=[
    dict(type='mmcv.LoadImageFromFile'),
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='mmpretrain.PackInputs'),
]))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=[
    dict(type='mmcv.LoadImageFromFile'),
    dict(type='mmpretrain.PackInputs'),
]))
test_dataloader = val_dataloader
val_evaluator = dict(type='CodebookUsage')
test_evaluator = val_evaluator

max_iters = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=30,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
custom_hooks = [dict(type='CodebookHealthHook', interval=50)]
