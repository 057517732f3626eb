# BEiT-3 base fine-tuned for NLVR2 at 224 (BEiT3NLVR2).
#
# The official recipe (microsoft/unilm beit3/get_started/
# get_started_for_nlvr2.md, run_beit3_finetuning.py defaults):
#   --model beit3_base_patch16_224 --task nlvr2 --batch_size 32 (x 8 GPUs
#   = 256) --layer_decay 0.65 --lr 7e-4 --epochs 20 --warmup_epochs 5
#   --drop_path 0.2 --weight_decay 0.2, starting from
#   beit3_base_patch16_224.pth (lr 5e-4 for the in-domain model)
#   defaults: AdamW (0.9, 0.999), eps 1e-8, warmup from 1e-6, cosine to
#   1e-6, texts of 64 tokens. Reported: 84.4 (test-P).
#
# Train:  tools/dist_train.sh \
#     configs/beit3/beit3-base-p16-224_8xb32-20e_nlvr2.py 8
# Test:   tools/dist_test.sh  \
#     configs/beit3/beit3-base-p16-224_8xb32-20e_nlvr2.py CKPT 8
_base_ = [
    '../_base_/schedules/beit3_vl_finetune.py',
    '../_base_/datasets/nlvr2_beit3.py',
]
pretrained = 'checkpoints/beit3_base_patch16_224_mmvlp.pth'
model = dict(
    type='BEiT3NLVR2',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=224,
        patch_size=16,
        layout='decoupled',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    num_classes=2,
    data_preprocessor={{_base_.data_preprocessor}})

lr = 7e-4
min_lr = 1e-6
warmup_lr = 1e-6
max_epochs = 20
warmup_epochs = 5
optim_wrapper = dict(
    optimizer=dict(lr=lr, weight_decay=0.2),
    paramwise_cfg=dict(layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    checkpoint=dict(save_best='accuracy/top1'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
