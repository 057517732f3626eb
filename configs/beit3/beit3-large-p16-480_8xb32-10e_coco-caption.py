# BEiT-3 large fine-tuned for COCO captioning at 480.
#
# The official recipe (get_started_for_captioning.md): as base but
#   --model beit3_large_patch16_480 --lr 8e-6 (COCO and NoCaps), starting
#   from beit3_large_patch16_224.pth.
_base_ = ['./beit3-base-p16-480_8xb32-10e_coco-caption.py']
pretrained = 'checkpoints/beit3_large_patch16_224_mmvlp.pth'
model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')))
lr = 8e-6
min_lr = 1e-6
warmup_lr = 1e-6
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=1, end=10, convert_to_iter_based=True),
]
