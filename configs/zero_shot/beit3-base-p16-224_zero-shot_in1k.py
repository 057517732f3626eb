# Zero-shot ImageNet-1k classification with BEiT-3 base as a dual encoder
# (ZeroShotClassifier over BEiT3Retrieval): the 1000 class names (CLIP's
# short ImageNet names, as mmpretrain lists them) through the default prompt
# templates; top-1 / top-5 by mmpretrain's Accuracy.
#
#   python tools/test.py \
#       configs/zero_shot/beit3-base-p16-224_zero-shot_in1k.py \
#       checkpoints/beit3_base_itc_patch16_224.pth
#
# The checkpoint: an official retrieval or itc file as downloaded (or
# converted), or an mmvlp BEiT3Retrieval fine-tuning checkpoint; its
# parameters are placed under model.encoder (ZeroShotClassifier accepts the
# encoder's checkpoints). A 384 retrieval file works too: its position table
# is resized to 224 at load (or set image_size = 384).
#
# Another mmpretrain classification dataset: replace test_dataloader.dataset
# and its class names (model.classes = [...], or model.classes = None with
# custom_hooks = [dict(type='mmvlp.ZeroShotClassesHook')] to take them from
# the dataset's metainfo).
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

image_size = 224
text_model = 'checkpoints/beit3.spm'
data_root = 'data/imagenet'

model = dict(
    type='mmvlp.ZeroShotClassifier',
    encoder=dict(
        type='mmvlp.BEiT3Retrieval',
        backbone=dict(type='mmvlp.BEiT3', arch='base', img_size=image_size,
                      patch_size=16, layout='decoupled')),
    tokenizer=dict(model_file=text_model, style='xlmr', max_length=64),
    classes='imagenet',
    templates='default',
    # BEiT-3's vision-language normalisation (mean = std = 0.5).
    data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                           mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5], to_rgb=True))

test_pipeline = [
    dict(type='mmpretrain.LoadImageFromFile'),
    dict(type='mmpretrain.ResizeEdge', scale=image_size, edge='short',
         backend='pillow', interpolation='bicubic'),
    dict(type='mmpretrain.CenterCrop', crop_size=image_size),
    dict(type='mmpretrain.PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='mmpretrain.ImageNet', data_root=data_root,
                 split='val', pipeline=test_pipeline))
test_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, 5))
test_cfg = dict()
