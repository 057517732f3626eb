# The demo's text-aligned BSQ tokenizer (QLIP stage 1: MSE reconstruction,
# BSQ entropy, contrastive alignment of the unquantized CLS with the
# captions) trained on the 48 px images of `make demo`, so that its 6x6 token
# map matches the demo BEiT-3. Its 18-bit tokens are the MIM targets of
# beit3-tiny-p8_demo-pretrain-bsq.py (`make demo-bsq-targets`).
# No flips: the captions name left and right.
_base_ = [
    '../tokenizers/bsqvit-text_vit-tiny-p8_demo.py',
    '../_base_/models/bsqvit-text-tiny-p8_demo.py',
]
data_root = 'data/demo_pretrain'
text_model = 'data/demo_pretrain/text_spm.model'
max_text_len = 24

model = {{_base_.demo_bsq_tokenizer}}

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        pipeline=[
            dict(type='mmcv.LoadImageFromFile'),
            dict(type='TokenizeText', model_file=text_model,
                 max_length=max_text_len),
            dict(type='mmpretrain.PackInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask']),
        ]))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=[
    dict(type='mmcv.LoadImageFromFile'),
    dict(type='mmpretrain.PackInputs'),
]))
test_dataloader = val_dataloader
