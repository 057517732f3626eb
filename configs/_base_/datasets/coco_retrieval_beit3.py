# COCO image-text retrieval (Karpathy split) as BEiT-3 fine-tunes it
# (unilm beit3/datasets.py, get_started_for_retrieval.md): 384 x 384,
# RandomResizedCrop(scale 0.5-1, bicubic) + horizontal flip for training,
# a bicubic resize for testing, mean = std = 0.5, texts up to 64 tokens of
# beit3.spm (XLM-R ids). Layout:
#   data/coco/dataset_coco.json, data/coco/train2014/, data/coco/val2014/
_base_ = ['./beit3_vl_loaders.py']
data_root = 'data/coco'
text_model = 'checkpoints/beit3.spm'
image_size = 384
max_text_len = 64

tokenize = dict(type='TokenizeText', model_file=text_model, style='xlmr',
                max_length=max_text_len, key='text')
train_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.RandomResizedCrop', scale=image_size,
         crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='mmpretrain.RandomFlip', prob=0.5, direction='horizontal'),
    tokenize,
    dict(type='PackVLInputs', algorithm_keys=['text_ids', 'text_padding_mask'],
         meta_keys=['image_id']),
]
test_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.Resize', scale=(image_size, image_size),
         backend='pillow', interpolation='bicubic'),
    tokenize,
    dict(type='PackVLInputs',
         algorithm_keys=['text_ids', 'text_padding_mask', 'gt_text_id',
                         'gt_image_id'],
         meta_keys=['image_id']),
]
dataset = dict(type='ImageTextRetrievalDataset', data_root=data_root,
               ann_file='dataset_coco.json')
train_dataloader = dict(
    batch_size=192,
    dataset=dict(splits=['train', 'restval'], pipeline=train_pipeline,
                 **dataset))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(splits=['val'], test_mode=True, pipeline=test_pipeline,
                 **dataset))
test_dataloader = dict(
    batch_size=64,
    dataset=dict(splits=['test'], test_mode=True, pipeline=test_pipeline,
                 **dataset))
# Image->text and text->image recall (i2t/..., t2i/... by the loops).
val_evaluator = dict(type='mmpretrain.RetrievalRecall', topk=(1, 5, 10))
test_evaluator = val_evaluator
val_cfg = dict(type='mmpretrain.RetrievalValLoop')
test_cfg = dict(type='mmpretrain.RetrievalTestLoop')
