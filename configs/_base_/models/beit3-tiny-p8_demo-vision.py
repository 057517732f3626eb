# The demo-pretrained tiny BEiT-3 (configs/demo/beit3-tiny-p8_demo-pretrain.py:
# 4 layers x 192, patch 8, 48x48 images) as a vision backbone, shared by the
# transfer demo configs of mmpretrain, mmdet and mmseg. Each of them inherits
# this file and uses `dict(_base_.demo_vision_backbone, out_type=..., ...)`.
# `make demo` writes the checkpoint (a `last_checkpoint` file stands for the
# checkpoint it names); `--cfg-options model.backbone.init_cfg=None` trains
# the same model from scratch (with the same sine-cosine start of the
# position table as the pretraining).
demo_pretrained = 'work_dirs/demo/pretrain/last_checkpoint'
demo_vision_backbone = dict(
    type='mmvlp.BEiT3',
    arch=dict(embed_dims=192, num_layers=4, num_heads=3,
              feedforward_channels=768),
    img_size=48,
    patch_size=8,
    # Text settings of the pretraining, needed to read its checkpoint;
    # vision_only drops the text parts with one log line.
    vocab_size=256,
    max_text_len=32,
    text_mask_token_id=255,
    vision_only=True,
    final_norm=False,
    drop_path_rate=0.1,
    pos_embed_init='sincos',
    init_cfg=dict(
        type='Pretrained', checkpoint=demo_pretrained, prefix='backbone.'))
