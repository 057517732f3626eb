# Image-text retrieval on the vision-language demo data: the tiny BEiT-3 of
# the demo pretraining as a dual encoder (BEiT3Retrieval), contrastive
# fine-tuning, evaluated by mmpretrain's RetrievalRecall (image->text and
# text->image) through mmpretrain's RetrievalValLoop.
#
#   python tools/data/make_demo_vl_data.py --out data/demo_vl
#   python tools/train.py configs/demo/beit3-tiny-p8_demo-vl-retrieval.py
# From scratch (same budget): --cfg-options model.backbone.init_cfg=None
# `make demo-vl` runs both (tools/demo/vl_demo.py).
_base_ = [
    '../_base_/datasets/demo_vl.py',
    '../_base_/schedules/demo_vl_finetune.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]

model = dict(
    type='BEiT3Retrieval',
    # The demo-pretrained backbone with its text parts (shared with the
    # transfer demo configs).
    backbone=dict(_base_.demo_vision_backbone, vision_only=False,
                  final_norm=True),
    data_preprocessor={{_base_.data_preprocessor}})

dataset = dict(
    type='ImageTextRetrievalDataset',
    data_root={{_base_.data_root}},
    ann_file='dataset_demo_vl.json',
    data_prefix=dict(img_path='images'))
train_dataloader = dict(
    batch_size=32,
    dataset=dict(
        splits=['train'],
        pipeline=[
            dict(type='LoadImageSafe'),
            {{_base_.train_crop}},
            {{_base_.tokenize}},
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask'],
                 meta_keys=['image_id']),
        ],
        **dataset))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(
        splits=['val'],
        test_mode=True,
        pipeline=[
            dict(type='LoadImageSafe'),
            {{_base_.test_resize}},
            {{_base_.tokenize}},
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask',
                                 'gt_text_id', 'gt_image_id'],
                 meta_keys=['image_id']),
        ],
        **dataset))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmpretrain.RetrievalRecall', topk=(1, 5))
test_evaluator = val_evaluator

val_cfg = dict(_delete_=True, type='mmpretrain.RetrievalValLoop')
test_cfg = dict(_delete_=True, type='mmpretrain.RetrievalTestLoop')
