# DeepSpeed ZeRO stage 1 with bf16: optimizer states partitioned across the
# processes, weights and gradients replicated. Inherit it after a recipe:
#   _base_ = ['../beit3/beit3-base-p16_64xb32x3-1m_pretrain.py',
#             '../_base_/strategies/deepspeed_zero1.py']
# tools/train.py then runs mmengine's FlexibleRunner, and
# mmvlp.runtime.setup_launch turns the recipe's OptimWrapper into a
# DeepSpeedOptimWrapper (clip_grad -> gradient_clipping, accumulative_counts
# -> gradient_accumulation_steps; precision is the strategy's bf16).
# The batch per GPU and step is the sum of the sources' batch sizes.
strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(
        stage=1,
        reduce_bucket_size=int(5e8)),
    bf16=dict(enabled=True),
    # Floating-point model inputs (images) follow the bf16 weights; token
    # ids and masks keep their dtype (mmvlp's fix of mmengine's cast).
    inputs_to_half=['inputs'],
)
