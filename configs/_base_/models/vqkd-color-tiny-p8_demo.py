# The demo's visual tokenizer: a tiny VQ-KD with 16 codes taught per-patch
# colour histograms (what the demo captions describe), 48 px images, patch 8.
demo_tokenizer = dict(
    type='VQKD',
    encoder=dict(
        arch=dict(embed_dims=96, num_layers=2, num_heads=2,
                  feedforward_channels=192),
        img_size=48,
        patch_size=8),
    quantizer=dict(type='NormEMAVectorQuantizer', num_codes=16, code_dims=8,
                   kmeans_init=True, dead_code_restart_steps=20),
    decoder=dict(
        arch=dict(embed_dims=96, num_layers=1, num_heads=2,
                  feedforward_channels=192)),
    target=dict(type='ColorHistogramTarget', patch_size=8, bins=6))
