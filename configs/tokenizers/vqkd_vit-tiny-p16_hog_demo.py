# A tiny VQ-KD tokenizer trained on the synthetic demo images against HOG
# targets (no teacher weights are needed), on CPU in a few minutes.
#   python tools/data/make_demo_data.py
#   python tools/train.py configs/tokenizers/vqkd_vit-tiny-p16_hog_demo.py
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_images_raw.py',
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

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.99),
                   weight_decay=1e-4),
    clip_grad=dict(max_norm=3.0))
max_iters = 600
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=200)
val_cfg = dict()
test_cfg = dict()
val_evaluator = dict(type='CodebookUsage')
test_evaluator = val_evaluator

custom_hooks = [
    dict(type='CodebookHealthHook', interval=50),
    dict(type='TokenizerVisualizationHook', num_images=8),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=200))
log_processor = dict(by_epoch=False)
