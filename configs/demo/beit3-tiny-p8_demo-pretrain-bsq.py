# The demo pretraining with the text-aligned BSQ tokenizer's 18-bit tokens
# as the MIM targets instead of the 12 VQ-KD colour codes: same backbone,
# data, masking and budget; the visual head predicts the 18 bits (a binary
# cross-entropy per bit) instead of a 2**18-way softmax.
#   python tools/train.py \
#       configs/demo/bsqvit-text_vit-tiny-p8_demo-tokenizer.py \
#       --work-dir work_dirs/demo/bsq_tokenizer
#   python tools/train.py configs/demo/beit3-tiny-p8_demo-pretrain-bsq.py \
#       --work-dir work_dirs/demo_bsq/pretrain
# `make demo-bsq-targets` runs both and compares with `make demo`.
_base_ = [
    './beit3-tiny-p8_demo-pretrain.py',
    '../_base_/models/bsqvit-text-tiny-p8_demo.py',
]
tokenizer_checkpoint = 'work_dirs/demo/bsq_tokenizer/iter_1000.pth'

model = dict(
    tokenizer={{_base_.demo_bsq_tokenizer}},
    tokenizer_checkpoint=tokenizer_checkpoint,
    mim_head=dict(type='FactorizedTokenHead', group_size=1))
