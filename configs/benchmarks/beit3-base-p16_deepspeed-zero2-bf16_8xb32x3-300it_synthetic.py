# The benchmark of beit3-base-p16_ddp-amp-bf16_8xb32x3-300it_synthetic.py
# (read it for the commands) under DeepSpeed ZeRO-2 in bf16.
_base_ = ['./beit3-base-p16_ddp-amp-bf16_8xb32x3-300it_synthetic.py',
          '../_base_/strategies/deepspeed_zero2.py']
