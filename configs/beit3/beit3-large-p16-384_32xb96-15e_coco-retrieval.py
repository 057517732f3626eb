# BEiT-3 large fine-tuned for COCO image-text retrieval at 384.
#
# The official recipe (get_started_for_retrieval.md): as base but
#   --model beit3_large_patch16_384 --batch_size 96 (x 32 GPUs = 3072)
#   --layer_decay 0.85 --lr 5e-5 --drop_path 0.2, starting from
#   beit3_large_itc_patch16_224.pth.
#
# Train:  NNODES=2 NODE_RANK=... tools/dist_train.sh \
#     configs/beit3/beit3-large-p16-384_32xb96-15e_coco-retrieval.py 16
_base_ = ['./beit3-base-p16-384_16xb192-15e_coco-retrieval.py']
pretrained = 'checkpoints/beit3_large_itc_patch16_224_mmvlp.pth'
model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')))
train_dataloader = dict(batch_size=96)
lr = 5e-5
min_lr = 1e-6
warmup_lr = 1e-6
optim_wrapper = dict(
    optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=0.85))
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=3, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=3, end=15, convert_to_iter_based=True),
]
