# VQAv2 as BEiT-3 fine-tunes it (unilm beit3/datasets.py,
# get_started_for_vqav2.md): 480 x 480, RandomResizedCrop(scale 0.5-1,
# bicubic) + horizontal flip + RandAugment for training, a bicubic resize
# for testing, mean = std = 0.5, questions up to 64 tokens of beit3.spm, the
# 3129 answers of train + val that occur at least 9 times
# (tools/data/build_vqa_answer_vocab.py writes answer2label.txt). Layout:
#   data/vqa/{train2014,val2014,test2015}/COCO_*.jpg
#   data/vqa/v2_OpenEnded_mscoco_{train2014,val2014,test2015}_questions.json
#   data/vqa/v2_mscoco_{train2014,val2014}_annotations.json
#   data/vqa/answer2label.txt
# The official split trains on train2014 + val2014 except 1000 val images
# (its vqa.train.jsonl, vqa.trainable_val.jsonl index files; VQAv2Dataset
# reads them with ann_file=<index>, question_file=None) and submits
# test-dev predictions to the evaluation server (ReportVQA below).
_base_ = ['./beit3_vl_loaders.py', './beit3_randaug.py']
data_root = 'data/vqa'
text_model = 'checkpoints/beit3.spm'
answer_file = 'data/vqa/answer2label.txt'
image_size = 480
max_text_len = 64

tokenize = dict(type='TokenizeText', model_file=text_model, style='xlmr',
                max_length=max_text_len, key='question')
train_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.RandomResizedCrop', scale=image_size,
         crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='mmpretrain.RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.beit3_randaug}},
    tokenize,
    dict(type='PackVLInputs',
         algorithm_keys=['text_ids', 'text_padding_mask', 'answer_labels',
                         'answer_scores'],
         meta_keys=['question_id', 'image_id']),
]
test_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.Resize', scale=(image_size, image_size),
         backend='pillow', interpolation='bicubic'),
    tokenize,
    dict(type='PackVLInputs',
         algorithm_keys=['text_ids', 'text_padding_mask', 'gt_answer',
                         'gt_answer_weight'],
         meta_keys=['question_id', 'image_id', 'question']),
]
dataset = dict(type='VQAv2Dataset', data_root=data_root,
               answer_file='answer2label.txt')
train_dataloader = dict(
    batch_size=16,
    dataset=dict(
        question_file='v2_OpenEnded_mscoco_train2014_questions.json',
        ann_file='v2_mscoco_train2014_annotations.json',
        data_prefix=dict(img_path='train2014'),
        pipeline=train_pipeline, **dataset))
val_dataloader = dict(
    batch_size=24,
    dataset=dict(
        question_file='v2_OpenEnded_mscoco_val2014_questions.json',
        ann_file='v2_mscoco_val2014_annotations.json',
        data_prefix=dict(img_path='val2014'), test_mode=True,
        pipeline=test_pipeline, **dataset))
val_evaluator = dict(type='mmpretrain.VQAAcc')
# test-dev / test-std: questions without answers -> a submission file.
test_dataloader = dict(
    batch_size=24,
    dataset=dict(
        question_file='v2_OpenEnded_mscoco_test-dev2015_questions.json',
        ann_file='', data_prefix=dict(img_path='test2015'), test_mode=True,
        pipeline=test_pipeline, **dataset))
test_evaluator = dict(type='mmpretrain.ReportVQA',
                      file_path='work_dirs/vqav2_test-dev_submission.json')
