# BEiT-3 base pretraining, the paper's recipe: 64 GPUs x (32 images + 32
# texts + 32 pairs) = 2048 + 2048 + 2048 per step; with fewer GPUs set
# optim_wrapper.accumulative_counts so GPUs x 32 x counts = 2048.
# Visual targets: the BEiT v2 VQ-KD tokenizer (8192 codes), converted with
# tools/model_converters/vqkd_to_mmvlp.py.
_base_ = [
    '../_base_/datasets/beit3_pretrain_sources.py',
    '../_base_/schedules/beit3_pretrain_1m.py',
]
tokenizer_checkpoint = 'checkpoints/vqkd_encoder_base_decoder_3x768x12_clip_mmvlp.pth'

model = dict(
    type='BEiT3Pretrain',
    backbone=dict(
        type='BEiT3',
        arch='base',
        img_size=224,
        patch_size=16,
        vocab_size=64010,
        max_text_len=64,
        layout='decoupled',
        drop_path_rate=0.1),
    tokenizer=dict(
        type='VQKD',
        encoder=dict(arch='base', img_size=224, patch_size=16),
        quantizer=dict(type='NormEMAVectorQuantizer', num_codes=8192,
                       code_dims=32),
        decoder=None,
        mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
        std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]),
    tokenizer_checkpoint=tokenizer_checkpoint,
    data_preprocessor=dict(type='MultiSourceDataPreprocessor'))
