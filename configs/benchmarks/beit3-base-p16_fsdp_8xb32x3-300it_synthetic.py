# The benchmark of beit3-base-p16_ddp-amp-bf16_8xb32x3-300it_synthetic.py
# (read it for the commands) under FSDP with bf16 autocast.
_base_ = ['./beit3-base-p16_ddp-amp-bf16_8xb32x3-300it_synthetic.py',
          '../_base_/strategies/fsdp.py']
