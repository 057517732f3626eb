# The released BEiT v2 VQ-KD tokenizer for encoding images (inference only:
# no teacher, no decoder): ViT-B/16 encoder at 224, 8192 x 32 codebook.
#
#   python tools/model_converters/vqkd_to_mmvlp.py \
#       vqkd_encoder_base_decoder_3x768x12_clip-d5036aa7.pth \
#       checkpoints/vqkd_beitv2_base_clip_mmvlp.pth
#   python tools/tokenize_images.py \
#       configs/tokenizers/vqkd_vit-base-p16_beitv2_inference.py \
#       checkpoints/vqkd_beitv2_base_clip_mmvlp.pth --data IMAGES --out TOKENS
# or as the frozen target of pretraining:
#   BEiT3Pretrain(tokenizer=<this model>, tokenizer_checkpoint=
#                 'checkpoints/vqkd_beitv2_base_clip_mmvlp.pth')
# The converted file keeps the decoder; this encode-only model leaves it out
# at load (one log line). Pixels are raw RGB in [0, 255]; the CLIP-taught
# tokenizers (vqkd_encoder_base_decoder_{1,3}x768x12_clip) normalise with
# CLIP's mean/std, as their scaling layer. For
# vqkd_encoder_base_decoder_1x768x12_dino use ImageNet's:
#   --cfg-options model.mean="[123.675,116.28,103.53]" \
#                 model.std="[58.395,57.12,57.375]"
# (the converter prints the config it reads from the file, mean/std
# included.) Token parity with mmpretrain's VQKD: tests/test_vqkd.py.
default_scope = 'mmvlp'
clip_mean = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
clip_std = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]
model = dict(
    type='VQKD',
    encoder=dict(arch='base', img_size=224, patch_size=16),
    quantizer=dict(type='NormEMAVectorQuantizer', num_codes=8192,
                   code_dims=32, kmeans_init=False),
    decoder=None,
    target=None,
    mean=clip_mean,
    std=clip_std)
