# BEiT-3 pretraining data: images alone (ImageNet-21k-style folder), a text
# corpus (jsonl, one document per line) and image-caption pairs (jsonl lists
# as used for CC3M/CC12M/SBU/COCO/VG). Replace the paths with yours.
image_root = 'data/imagenet21k'
text_corpus = 'data/text/corpus.jsonl'
pair_root = 'data/pairs'
pair_list = 'train.jsonl'
text_model = 'checkpoints/beit3.spm'  # BEiT-3's SentencePiece model
image_size = 224
tokenizer_size = 224
patch_grid = 14
max_text_len = 64
text_vocab_size = 64010
text_mask_id = 64001

view_pipeline = [
    # Unreadable images are skipped, replaced and counted (DataSkipHook);
    # the same pipeline serves WebShardDataset (decoded images pass through).
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.ColorJitter', brightness=0.4, contrast=0.4,
         saturation=0.4),
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewCrop', size=image_size, second_size=tokenizer_size,
         scale=(0.08, 1.0), interpolation='bicubic',
         second_interpolation='lanczos'),
    dict(type='BlockwiseMaskGenerator', input_size=patch_grid,
         mask_ratio=0.4, min_num_patches=16, min_aspect=0.3),
]
# Pinned host memory: the preprocessor's non-blocking copies to the GPU then
# overlap with compute (3 sources x 10 workers per GPU).
loader = dict(
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
train_dataloader = dict(
    image=dict(
        batch_size=32,
        dataset=dict(type='mmpretrain.CustomDataset', data_root=image_root,
                     data_prefix='train', with_label=False,
                     pipeline=view_pipeline + [dict(type='PackFields')]),
        **loader),
    text=dict(
        batch_size=32,
        dataset=dict(
            type='TextCorpusDataset',
            ann_file=text_corpus,
            field='text',
            tokenizer=dict(model_file=text_model, max_length=max_text_len),
            pipeline=[
                dict(type='TextMasking', mask_id=text_mask_id,
                     vocab_size=text_vocab_size, mask_ratio=0.15),
                dict(type='PackFields', pad_to=max_text_len),
            ]),
        **loader),
    pair=dict(
        batch_size=32,
        dataset=dict(
            type='ImageTextDataset',
            data_root=pair_root,
            ann_file=pair_list,
            pipeline=view_pipeline + [
                dict(type='TokenizeText', model_file=text_model,
                     max_length=max_text_len),
                dict(type='TextMasking', mask_id=text_mask_id,
                     vocab_size=text_vocab_size, mask_ratio=0.5),
                dict(type='PackFields', pad_to=max_text_len),
            ]),
        **loader),
)
# Web-scale pairs instead: shards written by tools/data/make_shards.py,
# streamed and split across ranks and workers (an iterable dataset takes no
# sampler). In a config that inherits this one:
# train_dataloader = dict(pair=dict(sampler=None, dataset=dict(
#     _delete_=True, type='WebShardDataset',
#     urls='data/pairs/pairs-{000000..000999}.tar', num_samples=...,
#     shuffle_buffer=5000, repeat=True,
#     pipeline={{_base_.train_dataloader.pair.dataset.pipeline}})))

# Skipped bad data per source and reason, in the log.
custom_hooks = [dict(type='DataSkipHook')]
