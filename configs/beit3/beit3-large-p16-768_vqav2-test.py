# Evaluation of the released BEiT-3 large VQAv2 model at 768
# (beit3_large_indomain_patch16_768_vgqaaug_vqa.pth, fine-tuned by the
# authors with Visual Genome QA added; its training recipe is not
# published). The large 480 config with 768 x 768 images, loading the file
# as it is:
#   tools/test.py configs/beit3/beit3-large-p16-768_vqav2-test.py \
#       beit3_large_indomain_patch16_768_vgqaaug_vqa.pth
# (test-dev: writes the submission file of ReportVQA; the val loop gives
# VQA accuracy on val2014, which this model saw in training.)
_base_ = ['./beit3-large-p16-480_8xb16-10e_vqav2.py']
image_size = 768
model = dict(backbone=dict(img_size=image_size, init_cfg=None))
test_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.Resize', scale=(image_size, image_size),
         backend='pillow', interpolation='bicubic'),
    {{_base_.tokenize}},
    dict(type='PackVLInputs',
         algorithm_keys=['text_ids', 'text_padding_mask', 'gt_answer',
                         'gt_answer_weight'],
         meta_keys=['question_id', 'image_id', 'question']),
]
val_dataloader = dict(batch_size=8, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(batch_size=8, dataset=dict(pipeline=test_pipeline))
