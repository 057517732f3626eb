# QLIP stage 1 with language alignment on the demo image-caption pairs: the
# unquantized image CLS is aligned contrastively with a tiny BEiT-3 text
# tower; the contrastive weight follows the gradient-magnitude ratio,
# measured every 10 steps and averaged (EMA 0.9; logged as
# contrastive_weight): 1.10x faster than measuring it every step, with
# equal or better PSNR and R@1 (docs/tokenizers.md).
#   python tools/data/make_demo_data.py
#   python tools/train_text_tokenizer.py data/demo/captions_train.jsonl \
#       data/demo/text_spm --vocab-size 200 --field caption
#   python tools/train.py configs/tokenizers/bsqvit-text_vit-tiny-p8_demo.py
_base_ = ['./bsqvit_vit-tiny-p8_demo.py']
text_model = 'data/demo/text_spm.model'
max_text_len = 32

model = dict(
    text_encoder=dict(
        type='BEiT3',
        arch=dict(embed_dims=128, num_layers=2, num_heads=2,
                  feedforward_channels=256),
        img_size=64,
        patch_size=16,
        vocab_size=256,  # >= the demo tokenizer's ids
        max_text_len=max_text_len,
        text_mask_token_id=255),
    embed_dims=64,
    balance_interval=10,
    balance_momentum=0.9)

pipeline_tail = [
    dict(type='TokenizeText', model_file=text_model,
         max_length=max_text_len),
    dict(type='mmpretrain.PackInputs',
         algorithm_keys=['text_ids', 'text_padding_mask']),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ImageTextDataset',
        data_root='data/demo',
        ann_file='captions_train.jsonl',
        pipeline=[
            dict(type='mmcv.LoadImageFromFile'),
            dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
        ] + pipeline_tail))
