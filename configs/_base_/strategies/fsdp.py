# PyTorch FSDP (FULL_SHARD): weights, gradients and optimizer states sharded
# across the processes; every Multiway Transformer layer is its own FSDP
# unit (gathered when it runs). Inherit it after a recipe:
#   _base_ = ['../beit3/beit3-base-p16_64xb32x3-1m_pretrain.py',
#             '../_base_/strategies/fsdp.py']
# tools/train.py then runs mmengine's FlexibleRunner. The recipe's
# AmpOptimWrapper (bf16 autocast) and gradient clipping are kept; mmvlp
# clips with the norm of the whole model (FSDP.clip_grad_norm_), not of each
# rank's shards. Checkpoints hold the full state dict (gathered on rank 0),
# loadable by any number of processes and by init_cfg=Pretrained; use
# fsdp_sharded.py for per-rank shards.
# Mixed precision of the sharded weights: gathered and computed in bf16
# (half the all-gather traffic), gradients reduced and weights kept in
# fp32. CPU-only hosts drop it and train in fp32 (mmvlp.runtime.setup_launch),
# as they drop AmpOptimWrapper. Frozen modules a model names (BEiT-3's
# visual tokenizer) stay outside FSDP, whole and fp32 on every rank.
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(type='mmvlp.multiway_layer_wrap_policy'),
        use_orig_params=True,
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32',
                             buffer_dtype='float32')),
    state_dict_cfg='full',
)
