# The BEiT v2 VQ-KD tokenizer recipe
# with FSDP (one unit per transformer layer, bf16 autocast).
# Same model, data and schedule as
# vqkd_vit-base-p16_clip-teacher_8xb64-100e_in1k.py (DDP). The codebook's EMA
# statistics are buffers, which every strategy keeps in fp32 and replicated.
_base_ = ['./vqkd_vit-base-p16_clip-teacher_8xb64-100e_in1k.py',
          '../_base_/strategies/fsdp.py']
