# BEiT-3 giant (the paper's model): 40 layers, shared self-attention, V/L-FFN
# experts everywhere and VL-FFN in the top 3 layers, patch 14 (16x16 grid);
# the tokenizer view is 256 px so the patch-16 tokenizer also gives 16x16.
_base_ = ['./beit3-base-p16_64xb32x3-1m_pretrain.py']
tokenizer_size = 256
patch_grid = 16
model = dict(
    backbone=dict(arch='giant', patch_size=14, layout='shared',
                  num_vl_layers=3),
    tokenizer=dict(encoder=dict(img_size=256)))
view_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.ColorJitter', brightness=0.4, contrast=0.4,
         saturation=0.4),
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewCrop', size=224, second_size=tokenizer_size,
         scale=(0.08, 1.0), interpolation='bicubic',
         second_interpolation='lanczos'),
    dict(type='BlockwiseMaskGenerator', input_size=patch_grid,
         mask_ratio=0.4, min_num_patches=16, min_aspect=0.3),
]
train_dataloader = dict(
    image=dict(dataset=dict(pipeline=view_pipeline + [
        dict(type='PackFields')])),
    pair=dict(dataset=dict(pipeline=view_pipeline + [
        dict(type='TokenizeText', model_file='checkpoints/beit3.spm',
             max_length=64),
        dict(type='TextMasking', mask_id=64001, vocab_size=64010,
             mask_ratio=0.5),
        dict(type='PackFields', pad_to=64),
    ])))
