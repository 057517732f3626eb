# BEiT-3 giant pretraining (the paper's recipe)
# with FSDP (full sharding, one unit per Multiway layer, bf16 autocast).
# Same data, schedule and optimisation as
# beit3-giant-p14_64xb32x3-1m_pretrain.py (DDP); docs/scaling.md gives the
# per-GPU batch, accumulation and memory for fewer GPUs:
#   tools/dist_train.sh CONFIG 8 --accumulate 8   # 8 GPUs x 32 x 3 x 8
_base_ = ['./beit3-giant-p14_64xb32x3-1m_pretrain.py',
          '../_base_/strategies/fsdp.py']
# Activation checkpointing of every layer (non-reentrant, inside the
# model): the giant's activations at 32 + 32 + 32 per GPU would not fit
# in 80 GB otherwise (tools/analysis_tools/estimate_memory.py).
model = dict(backbone=dict(with_cp=True))
