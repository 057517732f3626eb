# Image captioning on the vision-language demo data (Karpathy-split JSON):
# BEiT3Captioner (prefix-causal masked language modeling with the
# pretraining's MLM head, beam search with cached keys/values), evaluated by
# mmvlp's CaptionMetric (pycocoevalcap's BLEU / ROUGE-L / CIDEr, offline).
#
#   python tools/data/make_demo_vl_data.py --out data/demo_vl
#   python tools/train.py configs/demo/beit3-tiny-p8_demo-vl-caption.py
# From scratch (same budget): --cfg-options model.backbone.init_cfg=None
# (the MLM head then starts from scratch too).
_base_ = [
    '../_base_/datasets/demo_vl.py',
    '../_base_/schedules/demo_vl_finetune.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]

model = dict(
    type='BEiT3Captioner',
    # The demo-pretrained backbone with its text parts (shared with the
    # transfer demo configs).
    backbone=dict(_base_.demo_vision_backbone, vision_only=False,
                  final_norm=True),
    tokenizer=dict(model_file={{_base_.text_model}}, style='xlmr'),
    max_length={{_base_.max_text_len}},
    num_beams=3,
    length_penalty=0.6,
    label_smoothing=0.1,
    drop_worst_ratio=0.2,
    drop_worst_after=200,
    data_preprocessor={{_base_.data_preprocessor}})

dataset = dict(
    type='ImageCaptionDataset',
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
            # 70% of the caption tokens (</s> included, <s> never) are
            # predicted, as the official recipe's captioning_mask_prob.
            dict(type='TextMasking', mask_id=255, vocab_size=256,
                 mask_ratio=0.7, special_ids=(0, 1)),
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask',
                                 'masked_text_ids', 'text_mlm_mask'],
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
            dict(type='PackVLInputs', algorithm_keys=['gt_caption'],
                 meta_keys=['image_id']),
        ],
        **dataset))
test_dataloader = val_dataloader
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
