# Pretrain a tiny BEiT-3 on the generated demo data: masked image modeling
# on images, masked language modeling on captions, and both on pairs, with
# one shared Multiway backbone and a frozen VQ-KD tokenizer as the target.
# `make demo` trains the tokenizer first
# (vqkd-color_vit-tiny-p8_demo-tokenizer.py) and evaluates the result with
# tools/analysis_tools/eval_demo_pretrain.py.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_pretrain_sources.py',
    '../_base_/models/vqkd-color-tiny-p8_demo.py',
]
# The tokenizer run's latest checkpoint (a `last_checkpoint` file stands for
# the checkpoint it names).
tokenizer_checkpoint = 'work_dirs/demo/tokenizer/last_checkpoint'

model = dict(
    type='BEiT3Pretrain',
    backbone=dict(
        type='BEiT3',
        arch=dict(embed_dims=192, num_layers=4, num_heads=3,
                  feedforward_channels=768),
        img_size=48,
        patch_size=8,
        vocab_size=256,
        max_text_len=32,
        text_mask_token_id=255,
        # From scratch on 3k images the table has to learn where patches
        # are; a sine-cosine start lets masked patches look at their
        # neighbours from the first steps.
        pos_embed_init='sincos'),
    tokenizer={{_base_.demo_tokenizer}},
    tokenizer_checkpoint=tokenizer_checkpoint,
    # Pairs carry the cross-modal signal the demo checks. Measured gains of
    # the matched over the shuffled partner (caption filling / foreground
    # MIM): pair weight 1: +0.137 / -, 2: +0.165 / +0.116, 3: +0.176 /
    # +0.193 (the last two at 1300 iterations, 50% pair image masking).
    loss_weights=dict(image=1., text=1., pair=3.),
    data_preprocessor=dict(type='MultiSourceDataPreprocessor'))

# The paper's optimiser (AdamW (0.9, 0.98), eps 1e-6, wd 0.05, clip 3.0)
# with a demo-sized schedule, in bf16 mixed precision as the paper's recipe:
# bf16 autocast with fp32 weights on CPUs with AMX or AVX512-BF16 (the demo
# step about 2x faster there, benchmarks/demo_step.py), fp32 elsewhere (one
# log line says so).
max_iters = 1300
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
                   weight_decay=0.05),
    clip_grad=dict(max_norm=3.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50,
         end=max_iters),
]
train_cfg = dict(type='MultiSourceTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=300))
log_processor = dict(by_epoch=False)
