# BEiT-3 base fine-tuned for COCO captioning at 480 (BEiT3Captioner).
#
# The official recipe (microsoft/unilm beit3/get_started/
# get_started_for_captioning.md, run_beit3_finetuning.py defaults):
#   --model beit3_base_patch16_480 --input_size 480 --task coco_captioning
#   --batch_size 32 (x 8 GPUs = 256) --layer_decay 1.0 --lr 4e-5 --randaug
#   --epochs 10 --warmup_epochs 1 --drop_path 0.1 --weight_decay 0.05
#   --num_max_bpe_tokens 32 --captioning_mask_prob 0.7
#   --drop_worst_after 12000 --checkpoint_activations,
#   starting from beit3_base_patch16_224.pth
#   defaults: label_smoothing 0.1, drop_worst_ratio 0.2, num_beams 3,
#   length_penalty 0.6, AdamW (0.9, 0.999), eps 1e-8, warmup from 1e-6,
#   cosine to 1e-6. (NoCaps: lr 1e-5.)
#
# Train:  tools/dist_train.sh \
#     configs/beit3/beit3-base-p16-480_8xb32-10e_coco-caption.py 8
# Test:   tools/dist_test.sh  \
#     configs/beit3/beit3-base-p16-480_8xb32-10e_coco-caption.py CKPT 8
_base_ = [
    '../_base_/schedules/beit3_vl_finetune.py',
    '../_base_/datasets/coco_caption_beit3.py',
]
pretrained = 'checkpoints/beit3_base_patch16_224_mmvlp.pth'
model = dict(
    type='BEiT3Captioner',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=480,
        patch_size=16,
        layout='decoupled',
        drop_path_rate=0.1,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    tokenizer=dict(model_file={{_base_.text_model}}, style='xlmr'),
    # Decoding as the official evaluation: beam 3, length penalty 0.6,
    # num_max_bpe_tokens 64 (its default at evaluation; training captions
    # are cut to 32 tokens by the pipeline), no token banned.
    max_length=64,
    num_beams=3,
    length_penalty=0.6,
    label_smoothing=0.1,
    drop_worst_ratio=0.2,
    drop_worst_after=12000,
    data_preprocessor={{_base_.data_preprocessor}})

lr = 4e-5
min_lr = 1e-6
warmup_lr = 1e-6
max_epochs = 10
warmup_epochs = 1
optim_wrapper = dict(
    optimizer=dict(lr=lr, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=1.0))
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
    checkpoint=dict(save_best='caption/CIDEr'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
