# DeepSpeed ZeRO stage 3 with bf16: weights, gradients and optimizer states
# partitioned across the processes; each layer's weights are gathered when
# it runs. Checkpoints hold partitioned weights: consolidate them with
# tools/model_converters/consolidate_checkpoint.py before fine-tuning. See
# deepspeed_zero1.py for how to use it.
_base_ = ['./deepspeed_zero1.py']
strategy = dict(
    zero_optimization=dict(
        stage=3,
        overlap_comm=True,
        contiguous_gradients=True,
        stage3_gather_16bit_weights_on_model_save=False))
