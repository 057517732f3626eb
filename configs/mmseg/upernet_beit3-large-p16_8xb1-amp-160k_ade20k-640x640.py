# UPerNet + auxiliary FCN head on ADE20K at 640x640 with a BEiT-3 large
# backbone (24 layers, 1024 wide; maps from layers 7, 11, 15, 23), as
# mmseg's BEiT-large recipe: lr 2e-5, layer decay 0.95, drop path 0.2,
# batch 8 (8 GPUs x 1), mixed precision. Weights: beit3_large_patch16_224.pth
# converted with tools/model_converters/beit3_unilm_to_mmvlp.py.
_base_ = './upernet_beit3-base-p16_8xb2-160k_ade20k-640x640.py'

pretrained = 'checkpoints/beit3_large_patch16_224_mmvlp.pth'
model = dict(
    backbone=dict(
        arch='large',
        out_indices=(7, 11, 15, 23),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(
    type='AmpOptimWrapper',
    paramwise_cfg=dict(layer_decay_rate=0.95),
    optimizer=dict(lr=2e-5))
train_dataloader = dict(batch_size=1)
