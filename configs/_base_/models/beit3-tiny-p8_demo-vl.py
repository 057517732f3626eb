# The tiny BEiT-3 of the demo pretraining (configs/demo/
# beit3-tiny-p8_demo-pretrain.py) as the backbone of the vision-language
# demo tasks, loading that pretraining's weights.
pretrained = 'work_dirs/demo/pretrain/iter_1000.pth'
backbone = dict(
    type='BEiT3',
    arch=dict(embed_dims=192, num_layers=4, num_heads=3,
              feedforward_channels=768),
    img_size=48,
    patch_size=8,
    vocab_size=256,
    max_text_len=32,
    text_mask_token_id=255,
    # As the pretraining, so that the scratch run starts alike.
    pos_embed_init='sincos',
    drop_path_rate=0.1,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                  prefix='backbone.'))
