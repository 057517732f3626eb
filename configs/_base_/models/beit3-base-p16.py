# BEiT-3 base backbone (Multiway Transformer, patch 16). Use it as a backbone:
#   backbone = dict(type='mmvlp.BEiT3', arch='base', ...)  # from other scopes
model = dict(
    type='BEiT3',
    arch='base',
    img_size=224,
    patch_size=16,
    layout='decoupled',
    out_type='cls_token')
