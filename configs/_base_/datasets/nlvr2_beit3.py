# NLVR2 as BEiT-3 fine-tunes it (unilm beit3/datasets.py,
# get_started_for_nlvr2.md): 224 x 224, each image of a pair cropped
# (RandomResizedCrop scale 0.5-1, bicubic) and flipped on its own, a bicubic
# resize for testing, statements up to 64 tokens of beit3.spm. Layout (the
# official one): data/nlvr2/images/train/<dir>/*.png, data/nlvr2/dev/*.png,
# data/nlvr2/test1/*.png and NLVR2's json lines in
# data/nlvr2/nlvr/nlvr2/data/{train,dev,test1}.json.
_base_ = ['./beit3_vl_loaders.py']
data_root = 'data/nlvr2'
text_model = 'checkpoints/beit3.spm'
image_size = 224
max_text_len = 64

tokenize = dict(type='TokenizeText', model_file=text_model, style='xlmr',
                max_length=max_text_len, key='text')
train_pipeline = [
    dict(type='ForEachImage',
         transforms=[
             dict(type='LoadImageSafe'),
             dict(type='mmpretrain.RandomResizedCrop', scale=image_size,
                  crop_ratio_range=(0.5, 1.0), backend='pillow',
                  interpolation='bicubic'),
             dict(type='mmpretrain.RandomFlip', prob=0.5,
                  direction='horizontal'),
         ]),
    tokenize,
    dict(type='PackVLInputs', algorithm_keys=['text_ids', 'text_padding_mask'],
         meta_keys=['identifier']),
]
test_pipeline = [
    dict(type='ForEachImage',
         transforms=[
             dict(type='LoadImageSafe'),
             dict(type='mmpretrain.Resize', scale=(image_size, image_size),
                  backend='pillow', interpolation='bicubic'),
         ]),
    tokenize,
    dict(type='PackVLInputs', algorithm_keys=['text_ids', 'text_padding_mask'],
         meta_keys=['identifier']),
]
train_dataloader = dict(
    batch_size=32,
    dataset=dict(type='NLVR2Dataset', data_root=data_root,
                 ann_file='nlvr/nlvr2/data/train.json',
                 data_prefix=dict(img_path='images/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=48,
    dataset=dict(type='NLVR2Dataset', data_root=data_root,
                 ann_file='nlvr/nlvr2/data/dev.json',
                 data_prefix=dict(img_path='dev'), pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=48,
    dataset=dict(type='NLVR2Dataset', data_root=data_root,
                 ann_file='nlvr/nlvr2/data/test1.json',
                 data_prefix=dict(img_path='test1'), pipeline=test_pipeline))
val_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, ))
test_evaluator = val_evaluator
