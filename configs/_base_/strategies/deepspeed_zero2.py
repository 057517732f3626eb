# DeepSpeed ZeRO stage 2 with bf16: optimizer states and gradients
# partitioned across the processes, weights replicated. See
# deepspeed_zero1.py for how to use it.
_base_ = ['./deepspeed_zero1.py']
strategy = dict(
    zero_optimization=dict(
        stage=2,
        allgather_partitions=True,
        reduce_scatter=True,
        overlap_comm=True,
        contiguous_gradients=True))
