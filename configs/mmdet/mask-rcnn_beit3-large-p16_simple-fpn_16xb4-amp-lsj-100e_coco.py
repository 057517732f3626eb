# Mask R-CNN with a BEiT-3 large backbone (24 layers, 1024 wide): the base
# recipe with ViTDet's large settings -- global attention in layers 5, 11,
# 17, 23, drop path 0.4, layer decay 0.8 -- and activation checkpointing.
# Weights: beit3_large_patch16_224.pth converted with
# tools/model_converters/beit3_unilm_to_mmvlp.py.
_base_ = './mask-rcnn_beit3-base-p16_simple-fpn_16xb4-amp-lsj-100e_coco.py'

pretrained = 'checkpoints/beit3_large_patch16_224_mmvlp.pth'
model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.4,
        global_attn_indexes=(5, 11, 17, 23),
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(backbone_channel=1024, in_channels=[256, 512, 1024, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))
