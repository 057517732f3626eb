# BEiT-3 giant backbone (Multiway Transformer, patch 14). Use it as a backbone:
#   backbone = dict(type='mmvlp.BEiT3', arch='giant', ...)  # from other scopes
model = dict(
    type='BEiT3',
    arch='giant',
    img_size=224,
    patch_size=14,
    layout='shared',  # the paper's giant: shared attention, VL-FFN in the top 3 layers
    num_vl_layers=3,
    out_type='cls_token')
