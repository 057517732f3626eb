# A tiny VQ-KD tokenizer trained on the synthetic demo images against HOG
# targets (no teacher weights are needed), on CPU in a few minutes.
#   python tools/data/make_demo_data.py
#   python tools/train.py configs/tokenizers/vqkd_vit-tiny-p16_hog_demo.py
_base_ = [
    '../_base_/datasets/demo_images_raw.py',
    '../_base_/schedules/tokenizer_demo_cpu.py',
]

model = dict(
    type='VQKD',
    encoder=dict(
        arch=dict(embed_dims=128, num_layers=4, num_heads=2,
                  feedforward_channels=256),
        img_size=64,
        patch_size=16),
    quantizer=dict(
        type='NormEMAVectorQuantizer',
        num_codes=64,
        code_dims=16,
        decay=0.99,
        kmeans_init=True,
        # Beyond the BEiT v2 recipe: re-seed codes unused for 20 steps, which
        # keeps the small demo codebook from collapsing.
        dead_code_restart_steps=20),
    decoder=dict(
        arch=dict(embed_dims=128, num_layers=1, num_heads=2,
                  feedforward_channels=256)),
    target=dict(type='HOGTarget', patch_size=16, nbins=9, pool=8))

val_evaluator = dict(type='CodebookUsage')
test_evaluator = val_evaluator

custom_hooks = [
    dict(type='CodebookHealthHook', interval=50),
    # The latest grid also goes to <work_dir>/tokenizer.png.
    dict(type='TokenizerVisualizationHook', num_images=8,
         out_file='tokenizer.png'),
]
