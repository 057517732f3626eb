# BEiT-3 large fine-tuned on ImageNet-1k at 224. The official recipe
# (microsoft/unilm beit3/get_started/get_started_for_image_classification.md)
# differs from base in: --layer_decay 0.8 --lr 2e-4 --drop_path 0.25
# --checkpoint_activations. Reported top-1: 87.58 (large).
_base_ = ['./beit3-base-p16_8xb128-coslr-50e_in1k.py']

pretrained = 'checkpoints/beit3_large_patch16_224_mmvlp.pth'
lr = 2e-4  # warm-up from and decay to 1e-6 as in base
model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.25,
        with_cp=True,              # --checkpoint_activations
        init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=1024))

optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(layer_decay_rate=0.8))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-6 / lr, by_epoch=True,
         begin=5, end=50, convert_to_iter_based=True),
]
