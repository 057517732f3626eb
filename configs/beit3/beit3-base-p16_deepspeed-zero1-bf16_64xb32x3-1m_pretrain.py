# BEiT-3 base pretraining (the paper's recipe)
# with DeepSpeed ZeRO stage 1 in bf16.
# Same data, schedule and optimisation as
# beit3-base-p16_64xb32x3-1m_pretrain.py (DDP); docs/scaling.md gives the
# per-GPU batch, accumulation and memory for fewer GPUs:
#   tools/dist_train.sh CONFIG 8 --accumulate 8   # 8 GPUs x 32 x 3 x 8
_base_ = ['./beit3-base-p16_64xb32x3-1m_pretrain.py',
          '../_base_/strategies/deepspeed_zero1.py']
