# NLVR2-style visual reasoning on the vision-language demo data (statements
# about pairs of scenes in NLVR2's json-lines format): BEiT3NLVR2, evaluated
# by mmpretrain's Accuracy.
#
#   python tools/data/make_demo_vl_data.py --out data/demo_vl --nlvr2 2000 200
#   python tools/train.py configs/demo/beit3-tiny-p8_demo-vl-nlvr2.py
_base_ = [
    '../_base_/datasets/demo_vl.py',
    '../_base_/schedules/demo_vl_finetune.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]

model = dict(
    type='BEiT3NLVR2',
    # The demo-pretrained backbone with its text parts (shared with the
    # transfer demo configs).
    backbone=dict(_base_.demo_vision_backbone, vision_only=False,
                  final_norm=True),
    data_preprocessor={{_base_.data_preprocessor}})

train_dataloader = dict(
    batch_size=32,
    dataset=dict(
        type='NLVR2Dataset',
        data_root={{_base_.data_root}},
        ann_file='nlvr2/train.json',
        data_prefix=dict(img_path='nlvr2/images/train'),
        pipeline=[
            # Each image of the pair is loaded and augmented on its own.
            dict(type='ForEachImage',
                 transforms=[dict(type='LoadImageSafe'),
                             {{_base_.train_crop}}]),
            {{_base_.tokenize}},
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask'],
                 meta_keys=['identifier']),
        ]))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(
        type='NLVR2Dataset',
        data_root={{_base_.data_root}},
        ann_file='nlvr2/val.json',
        data_prefix=dict(img_path='nlvr2/images/val'),
        pipeline=[
            dict(type='ForEachImage',
                 transforms=[dict(type='LoadImageSafe'),
                             {{_base_.test_resize}}]),
            {{_base_.tokenize}},
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask'],
                 meta_keys=['identifier']),
        ]))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(weight_decay=0.2))
