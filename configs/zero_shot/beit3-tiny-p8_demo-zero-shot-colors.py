# Zero-shot colour classification of held-out demo scenes: the colour of the
# largest object (8 classes; the labels of the transfer demo's
# classification task, tools/data/make_demo_cls_data.py --label color), with
# the demo's retrieval model (configs/demo/beit3-tiny-p8_demo-vl-retrieval.py,
# fine-tuned by `make demo-vl`) and no training on these labels: each colour
# becomes texts through the prompt templates below, each scene goes to the
# colour whose texts match it best. `make demo-zero-shot` runs it
# (tools/demo/zero_shot_demo.py).
#
#   python tools/data/make_demo_cls_data.py --label color \
#       --out data/demo_cls_colors
#   python tools/test.py \
#       configs/zero_shot/beit3-tiny-p8_demo-zero-shot-colors.py \
#       work_dirs/demo_vl/retrieval/pretrained/iter_200.pth
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]
custom_imports = dict(
    imports=['mmvlp.models', 'mmvlp.engine'], allow_failed_imports=False)

data_root = 'data/demo_cls_colors'
text_model = 'data/demo_pretrain/text_spm.model'
image_size = 48
classes = ('red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white',
           'black')
# The issue's prompt ("a photo with a red shape") and the demo captions'
# wording for a large object of each shape.
templates = ('a photo with a {} shape', 'a large {} circle',
             'a large {} square', 'a large {} triangle', 'a large {} stripe')

model = dict(
    type='mmvlp.ZeroShotClassifier',
    encoder=dict(
        type='mmvlp.BEiT3Retrieval',
        # The retrieval demo's model (its weights come from the checkpoint).
        backbone=dict(_base_.demo_vision_backbone, vision_only=False,
                      final_norm=True, init_cfg=None)),
    tokenizer=dict(model_file=text_model, style='xlmr', max_length=24),
    classes=classes,
    templates=templates,
    data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],  # as the demo
                           std=[58.395, 57.12, 57.375], to_rgb=True))

test_pipeline = [
    dict(type='mmpretrain.LoadImageFromFile'),
    dict(type='mmpretrain.Resize', scale=(image_size, image_size),
         backend='pillow', interpolation='nearest'),
    dict(type='mmpretrain.PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='mmpretrain.CustomDataset', data_root=data_root,
                 data_prefix='', ann_file='cls_val.txt',
                 metainfo=dict(classes=classes), pipeline=test_pipeline))
test_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, 5))
test_cfg = dict()
randomness = dict(seed=0)
