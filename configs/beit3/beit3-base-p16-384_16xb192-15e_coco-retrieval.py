# BEiT-3 base fine-tuned for COCO image-text retrieval at 384 (dual
# encoder, BEiT3Retrieval).
#
# The official recipe (microsoft/unilm beit3/get_started/
# get_started_for_retrieval.md, run_beit3_finetuning.py defaults):
#   --model beit3_base_patch16_384 --input_size 384 --task coco_retrieval
#   --batch_size 192 (x 16 GPUs = 3072) --layer_decay 0.65 --lr 2e-4
#   --epochs 15 --warmup_epochs 3 --drop_path 0.2 --weight_decay 0.05
#   --checkpoint_activations, starting from beit3_base_itc_patch16_224.pth
#   defaults: AdamW (0.9, 0.999), eps 1e-8, no gradient clipping,
#   warmup from 1e-6, cosine to min_lr 1e-6, texts of 64 tokens.
# Contrastive loss over the batch of all GPUs (negatives gathered).
#
# Train:  tools/dist_train.sh \
#     configs/beit3/beit3-base-p16-384_16xb192-15e_coco-retrieval.py 16
# Test:   tools/dist_test.sh  \
#     configs/beit3/beit3-base-p16-384_16xb192-15e_coco-retrieval.py CKPT 16
# Weights: convert the official checkpoint with
#   tools/model_converters/beit3_unilm_to_mmvlp.py (its task heads are kept
#   aside; the retrieval heads start fresh) or use mmvlp pretraining.
_base_ = [
    '../_base_/schedules/beit3_vl_finetune.py',
    '../_base_/datasets/coco_retrieval_beit3.py',
]
pretrained = 'checkpoints/beit3_base_itc_patch16_224_mmvlp.pth'
model = dict(
    type='BEiT3Retrieval',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=384,             # the 224 position table is resized at load
        patch_size=16,
        layout='decoupled',
        drop_path_rate=0.2,
        with_cp=True,             # --checkpoint_activations
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    data_preprocessor={{_base_.data_preprocessor}})

lr = 2e-4
min_lr = 1e-6
warmup_lr = 1e-6
max_epochs = 15
warmup_epochs = 3
optim_wrapper = dict(
    optimizer=dict(lr=lr, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    checkpoint=dict(save_best='i2t/retrieval/Recall@1'))
# The recipe's total batch (16 GPUs x 192); lr is not rescaled automatically.
auto_scale_lr = dict(base_batch_size=3072, enable=False)
