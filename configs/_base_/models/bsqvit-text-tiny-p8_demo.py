# The demo's text-aligned BSQ tokenizer (QLIP stage 1 at demo size) for the
# 48 px demo scenes: a 6x6 map of 18-bit tokens, its CLS aligned with the
# captions by a tiny BEiT-3 text tower. Trained by
# configs/demo/bsqvit-text_vit-tiny-p8_demo-tokenizer.py; the MIM target of
# configs/demo/beit3-tiny-p8_demo-pretrain-bsq.py. `_delete_` makes it
# replace (not merge into) the model or tokenizer it is assigned to.
demo_bsq_tokenizer = dict(
    _delete_=True,
    type='BSQViT',
    encoder=dict(
        arch=dict(embed_dims=128, num_layers=4, num_heads=2,
                  feedforward_channels=256),
        img_size=48,
        patch_size=8),
    # QLIP's quantizer defaults: loss = commitment_weight * commitment +
    # entropy_weight * (per_sample - codebook) / inv_temperature.
    quantizer=dict(
        type='BinarySphericalQuantizer',
        code_dims=18,
        group_size=9,
        inv_temperature=100.,
        entropy_weight=1.,
        commitment_weight=0.),
    decoder=dict(
        arch=dict(embed_dims=128, num_layers=4, num_heads=2,
                  feedforward_channels=256)),
    recon_loss='l2',
    text_encoder=dict(
        type='BEiT3',
        arch=dict(embed_dims=128, num_layers=2, num_heads=2,
                  feedforward_channels=256),
        img_size=48,
        patch_size=16,
        vocab_size=256,  # >= the demo text tokenizer's ids
        max_text_len=24,
        text_mask_token_id=255),
    embed_dims=64)
