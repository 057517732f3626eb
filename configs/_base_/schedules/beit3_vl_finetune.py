# The fine-tuning setup of unilm's beit3/run_beit3_finetuning.py that the
# BEiT-3 vision-language recipes share: AdamW (0.9, 0.999), eps 1e-8, with
# layer-wise lr decay; epoch-based training with a validation and a
# checkpoint every epoch, keeping the two newest and the best. A recipe sets
# its lr, weight decay and layer decay, its epochs and the scheduler (linear
# warm-up from 1e-6, cosine to 1e-6, both written with its own lr) and the
# metric to keep the best checkpoint by (save_best).
_base_ = ['../default_runtime.py']

# Mixed precision as the official fine-tuning (fp16 autocast + loss scaling,
# or DeepSpeed fp16, there; bf16 here, which needs no loss scaling).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', betas=(0.9, 0.999), eps=1e-8),
    constructor='LayerDecayOptimWrapperConstructor')
train_cfg = dict(type='EpochBasedTrainLoop', val_interval=1)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2,
                    rule='greater'))
custom_hooks = [dict(type='DataSkipHook')]
