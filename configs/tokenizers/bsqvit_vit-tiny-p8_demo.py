# A tiny BSQ-ViT tokenizer (QLIP stage 1 without the text tower) trained on
# the synthetic demo images, on CPU in a few minutes, with QLIP's stage-1
# loss defaults (docs/tokenizers.md).
#   python tools/data/make_demo_data.py
#   python tools/train.py configs/tokenizers/bsqvit_vit-tiny-p8_demo.py
_base_ = [
    '../_base_/datasets/demo_images_raw.py',
    '../_base_/schedules/tokenizer_demo_cpu.py',
]

model = dict(
    type='BSQViT',
    encoder=dict(
        arch=dict(embed_dims=128, num_layers=4, num_heads=2,
                  feedforward_channels=256),
        img_size=64,
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
    recon_loss='l2')  # QLIP stage 1: MSE reconstruction

optim_wrapper = dict(clip_grad=dict(max_norm=1.0))
max_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=250)
val_evaluator = [dict(type='ReconstructionMetric'), dict(type='CodebookUsage')]
test_evaluator = val_evaluator

custom_hooks = [dict(type='TokenizerVisualizationHook', num_images=8)]
default_hooks = dict(checkpoint=dict(interval=250))
