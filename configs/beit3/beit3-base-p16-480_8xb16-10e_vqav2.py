# BEiT-3 base fine-tuned for VQAv2 at 480 (BEiT3VQA).
#
# The official recipe (microsoft/unilm beit3/get_started/
# get_started_for_vqav2.md, run_beit3_finetuning.py defaults):
#   --model beit3_base_patch16_480 --input_size 480 --task vqav2
#   --batch_size 16 (x 8 GPUs = 128) --layer_decay 1.0 --lr 3e-5
#   --update_freq 1 --randaug --epochs 10 --warmup_epochs 1 --drop_path 0.1
#   --weight_decay 0.01 --task_head_lr_weight 20 --opt_betas 0.9 0.98,
#   starting from beit3_base_patch16_224.pth
#   defaults: eps 1e-8, no gradient clipping, warmup from 1e-6, cosine to
#   1e-6. The model has no final norm (normalize_output=False); the head
#   (not the pooler) learns 20x faster; BCE x 3129 on soft scores.
#
# Train:  tools/dist_train.sh \
#     configs/beit3/beit3-base-p16-480_8xb16-10e_vqav2.py 8
# Test-dev submission: tools/dist_test.sh ... CKPT 8 (writes the json of
#   ReportVQA); VQA accuracy on val2014: the val loop.
_base_ = [
    '../_base_/schedules/beit3_vl_finetune.py',
    '../_base_/datasets/vqav2_beit3.py',
]
pretrained = 'checkpoints/beit3_base_patch16_224_mmvlp.pth'
model = dict(
    type='BEiT3VQA',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=480,
        patch_size=16,
        layout='decoupled',
        final_norm=False,         # normalize_output=False
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    answers={{_base_.answer_file}},
    num_classes=3129,
    data_preprocessor={{_base_.data_preprocessor}})

lr = 3e-5
min_lr = 1e-6
warmup_lr = 1e-6
max_epochs = 10
warmup_epochs = 1
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.98), eps=1e-8,
                   weight_decay=0.01),
    paramwise_cfg=dict(
        layer_decay_rate=1.0,
        custom_keys={'head.': dict(lr_mult=20.)}))  # --task_head_lr_weight
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
    checkpoint=dict(save_best='VQA/acc'))
auto_scale_lr = dict(base_batch_size=128, enable=False)
