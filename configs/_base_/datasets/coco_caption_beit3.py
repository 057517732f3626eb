# COCO captioning (Karpathy split) as BEiT-3 fine-tunes it (unilm
# beit3/datasets.py, get_started_for_captioning.md): 480 x 480,
# RandomResizedCrop(scale 0.5-1, bicubic) + horizontal flip + RandAugment
# for training, captions of at most 32 tokens of beit3.spm of which 70% are
# masked (</s> included, <s> never; 80% mask / 10% random / 10% kept), a
# bicubic resize for testing; references for the metric come from the
# Karpathy file. Layout:
#   data/coco/dataset_coco.json, data/coco/train2014/, data/coco/val2014/
_base_ = ['./beit3_vl_loaders.py', './beit3_randaug.py']
data_root = 'data/coco'
text_model = 'checkpoints/beit3.spm'
image_size = 480
max_text_len = 32

train_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.RandomResizedCrop', scale=image_size,
         crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='mmpretrain.RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.beit3_randaug}},
    dict(type='TokenizeText', model_file=text_model, style='xlmr',
         max_length=max_text_len, key='text'),
    dict(type='TextMasking', mask_id=64001, vocab_size=64010,
         mask_ratio=0.7, special_ids=(0, 1)),
    dict(type='PackVLInputs',
         algorithm_keys=['text_ids', 'text_padding_mask', 'masked_text_ids',
                         'text_mlm_mask'],
         meta_keys=['image_id']),
]
test_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.Resize', scale=(image_size, image_size),
         backend='pillow', interpolation='bicubic'),
    dict(type='PackVLInputs', algorithm_keys=['gt_caption'],
         meta_keys=['image_id']),
]
dataset = dict(type='ImageCaptionDataset', data_root=data_root,
               ann_file='dataset_coco.json')
train_dataloader = dict(
    batch_size=32,
    dataset=dict(splits=['train', 'restval'], pipeline=train_pipeline,
                 **dataset))
val_dataloader = dict(
    batch_size=16,
    dataset=dict(splits=['val'], test_mode=True, pipeline=test_pipeline,
                 **dataset))
test_dataloader = dict(
    batch_size=16,
    dataset=dict(splits=['test'], test_mode=True, pipeline=test_pipeline,
                 **dataset))
# BLEU, ROUGE-L, CIDEr (+ METEOR: meteor=True); SPICE is not run offline.
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
