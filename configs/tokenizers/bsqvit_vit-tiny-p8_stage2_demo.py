# QLIP stage 2 on the demo images: the stage-1 encoder is frozen; the
# quantizer and pixel decoder train with L1 + perceptual (VGG-16) +
# adversarial (PatchGAN, hinge) losses.
#
# Needs VGG-16 weights you supply (torchvision's vgg16-397923af.pth) at
# `vgg_checkpoint`; PerceptualLoss refuses to run without them.
#   python tools/train.py configs/tokenizers/bsqvit_vit-tiny-p8_demo.py
#   python tools/train.py configs/tokenizers/bsqvit_vit-tiny-p8_stage2_demo.py
_base_ = ['./bsqvit_vit-tiny-p8_demo.py']
vgg_checkpoint = 'checkpoints/vgg16-397923af.pth'
load_from = 'work_dirs/bsqvit_vit-tiny-p8_demo/iter_1000.pth'

model = dict(
    stage=2,
    recon_loss='l1',  # L1 with perceptual + adversarial, as bsq-vit
    perceptual_loss=dict(type='PerceptualLoss', vgg_checkpoint=vgg_checkpoint),
    perceptual_weight=1.0,
    discriminator=dict(type='PatchDiscriminator', base_channels=32,
                       num_layers=2),
    adversarial_weight=0.1,
    disc_start_iter=200)

optim_wrapper = dict(
    _delete_=True,
    constructor='MultiOptimWrapperConstructor',
    generator=dict(optimizer=dict(type='AdamW', lr=2e-4, betas=(0.5, 0.9),
                                  weight_decay=1e-4)),
    discriminator=dict(optimizer=dict(type='AdamW', lr=2e-4,
                                      betas=(0.5, 0.9), weight_decay=1e-4)))
max_iters = 1000
param_scheduler = []
train_cfg = dict(max_iters=max_iters)
# Separate optimizers need mmengine's separate-DDP wrapper on several GPUs.
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel')
