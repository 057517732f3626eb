# BEiT-3 large: the base recipe with the large Multiway Transformer.
_base_ = ['./beit3-base-p16_64xb32x3-1m_pretrain.py']
model = dict(backbone=dict(arch='large'))
