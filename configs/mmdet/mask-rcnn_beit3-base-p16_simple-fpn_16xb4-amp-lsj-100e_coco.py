# Mask R-CNN on COCO with a BEiT-3 base backbone and ViTDet's simple feature
# pyramid: large-scale jitter at 1024 (mmdet's LSJ recipe), window attention
# (14x14) with global attention in layers 2, 5, 8, 11, layer-wise lr decay,
# AdamW, 100 epochs, batch 64 (16 GPUs x 4) -- the ViTDet setup.
#
# Weights: convert the official checkpoint first,
#   python tools/model_converters/beit3_unilm_to_mmvlp.py \
#       beit3_base_patch16_224.pth checkpoints/beit3_base_patch16_224_mmvlp.pth
# (mmvlp pretraining checkpoints: add prefix='backbone.' to init_cfg). The
# 224 position table is resized to 1024 on load.
#   python tools/train.py CONFIG   |   tools/dist_train.sh CONFIG 16
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/beit3-p16_simple-fpn_16xb4-amp-lsj-100e_coco.py',
]

image_size = {{_base_.image_size}}
pretrained = 'checkpoints/beit3_base_patch16_224_mmvlp.pth'
norm_cfg = dict(type='mmvlp.LN2d', requires_grad=True)

model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[
            dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)
        ]),
    backbone=dict(
        _delete_=True,
        type='mmvlp.BEiT3',
        vision_only=True,
        arch='base',
        img_size=image_size,
        patch_size=16,
        out_type='featmap',
        out_indices=(-1, ),
        final_norm=False,
        drop_path_rate=0.1,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        dynamic_img_size=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='mmvlp.SimpleFPN',
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))
