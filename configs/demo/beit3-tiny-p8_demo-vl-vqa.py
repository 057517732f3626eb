# Visual question answering on the vision-language demo data (questions
# about colour, shape, count, position, presence and background in VQAv2's
# JSON format): BEiT3VQA (pooler + MLP over the answer vocabulary, BCE on
# soft scores), evaluated by mmpretrain's VQAAcc.
#
#   python tools/data/make_demo_vl_data.py --out data/demo_vl
#   python tools/train.py configs/demo/beit3-tiny-p8_demo-vl-vqa.py
# From scratch (same budget): --cfg-options model.backbone.init_cfg=None
_base_ = [
    '../_base_/datasets/demo_vl.py',
    '../_base_/schedules/demo_vl_finetune.py',
    '../_base_/models/beit3-tiny-p8_demo-vision.py',
]
answers = 'data/demo_vl/vqa/answer2label.txt'

model = dict(
    type='BEiT3VQA',
    # The demo-pretrained backbone with its text parts (shared with the
    # transfer demo configs).
    backbone=dict(_base_.demo_vision_backbone, vision_only=False,
                  final_norm=True),
    answers=answers,
    data_preprocessor={{_base_.data_preprocessor}})

tokenize = dict(type='TokenizeText', model_file={{_base_.text_model}},
                style='xlmr', max_length={{_base_.max_text_len}},
                key='question')
dataset = dict(
    type='VQAv2Dataset',
    data_root={{_base_.data_root}},
    answer_file='vqa/answer2label.txt',
    img_template='{subtype}/{image_id:05d}.png',
    data_prefix=dict(img_path='images'))
train_dataloader = dict(
    batch_size=32,
    dataset=dict(
        ann_file='vqa/annotations_train.json',
        question_file='vqa/questions_train.json',
        pipeline=[
            dict(type='LoadImageSafe'),
            {{_base_.train_crop}},
            tokenize,
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask',
                                 'answer_labels', 'answer_scores'],
                 meta_keys=['question_id', 'image_id']),
        ],
        **dataset))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(
        ann_file='vqa/annotations_val.json',
        question_file='vqa/questions_val.json',
        test_mode=True,
        pipeline=[
            dict(type='LoadImageSafe'),
            {{_base_.test_resize}},
            tokenize,
            dict(type='PackVLInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask',
                                 'gt_answer', 'gt_answer_weight'],
                 meta_keys=['question_id', 'image_id', 'question']),
        ],
        **dataset))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmpretrain.VQAAcc')
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(betas=(0.9, 0.98), weight_decay=0.01),
    # The official recipe trains the classifier 20x faster
    # (--task_head_lr_weight 20): with BCE over the answers it otherwise
    # spends the short demo budget on the answer prior.
    paramwise_cfg=dict(custom_keys={'head.': dict(lr_mult=20.)}))
