# BEiT-3 large fine-tuned for NLVR2 at 224.
#
# The official recipe (get_started_for_nlvr2.md): as base but
#   --model beit3_large_patch16_224 --layer_decay 0.85 --lr 3e-4
#   --drop_path 0.2 --checkpoint_activations (lr 1e-4 for the in-domain
#   model). Reported: 89.4 (test-P).
_base_ = ['./beit3-base-p16-224_8xb32-20e_nlvr2.py']
pretrained = 'checkpoints/beit3_large_patch16_224_mmvlp.pth'
model = dict(
    backbone=dict(
        arch='large',
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')))
lr = 3e-4
min_lr = 1e-6
warmup_lr = 1e-6
optim_wrapper = dict(
    optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=0.85))
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=5, end=20, convert_to_iter_based=True),
]
