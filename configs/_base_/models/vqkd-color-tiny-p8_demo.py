# The demo's visual tokenizer: a tiny VQ-KD with 12 codes taught, per patch,
# the colour that stands out (rarity-weighted, one-hot colour histograms:
# the colours the demo captions name), 48 px images, patch 8. Plain colour
# shares made the codes count how much of a patch a shape covers, and the
# pretrained model then learned to predict the background everywhere.
demo_tokenizer = dict(
    type='VQKD',
    encoder=dict(
        arch=dict(embed_dims=96, num_layers=2, num_heads=2,
                  feedforward_channels=192),
        img_size=48,
        patch_size=8),
    quantizer=dict(type='NormEMAVectorQuantizer', num_codes=12, code_dims=8,
                   kmeans_init=True, dead_code_restart_steps=20),
    decoder=dict(
        arch=dict(embed_dims=96, num_layers=1, num_heads=2,
                  feedforward_channels=192)),
    target=dict(type='ColorHistogramTarget', patch_size=8, bins=6,
                rarity=True, hard=True))
