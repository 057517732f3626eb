# The vision-language demo data (tools/data/make_demo_vl_data.py): the
# shape scenes of the pretraining demo with captions (Karpathy-split JSON),
# VQAv2-format questions and NLVR2-format pairs, read by the real readers.
# Texts use the demo pretraining's SentencePiece model (BEiT-3 / XLM-R ids).
data_root = 'data/demo_vl'
text_model = 'data/demo_pretrain/text_spm.model'
image_size = 48
max_text_len = 24

data_preprocessor = dict(
    type='mmpretrain.MultiModalDataPreprocessor',
    mean=[123.675, 116.28, 103.53],  # as the demo pretraining
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# No flips: captions and answers name left and right. Mild crops keep the
# positions that they name (as in the pretraining).
train_crop = dict(type='mmpretrain.RandomResizedCrop', scale=image_size,
                  crop_ratio_range=(0.85, 1.0), backend='pillow',
                  interpolation='nearest')
test_resize = dict(type='mmpretrain.Resize', scale=(image_size, image_size),
                   backend='pillow', interpolation='nearest')
tokenize = dict(type='TokenizeText', model_file=text_model, style='xlmr',
                max_length=max_text_len, key='text')

# The loaders; the task configs add the batch size and the dataset.
train_dataloader = dict(
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
val_dataloader = dict(
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'))
test_dataloader = val_dataloader
