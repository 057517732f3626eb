# ImageNet-1k (mmpretrain's ImageNet layout under data/imagenet) as raw
# pixels, for tokenizer training: tokenizers normalise pixels themselves.
data_root = 'data/imagenet'
image_size = 224

train_pipeline = [
    dict(type='mmcv.LoadImageFromFile'),
    dict(type='mmpretrain.RandomResizedCrop', scale=image_size,
         crop_ratio_range=(0.08, 1.0), interpolation='bicubic'),
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='mmpretrain.PackInputs'),
]
test_pipeline = [
    dict(type='mmcv.LoadImageFromFile'),
    dict(type='mmpretrain.ResizeEdge', scale=256, edge='short',
         interpolation='bicubic'),
    dict(type='mmpretrain.CenterCrop', crop_size=image_size),
    dict(type='mmpretrain.PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='mmpretrain.ImageNet', data_root=data_root,
                 split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='mmpretrain.ImageNet', data_root=data_root,
                 split='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
