# Throughput, peak memory and loss curve of BEiT-3 base pretraining, the
# paper's recipe on generated data (no downloads; a random VQ-KD teacher has
# the real one's cost). On a machine with 8 GPUs:
#   python tools/data/make_demo_data.py --out data/synthetic224 --size 224 \
#       --num-train 20000 --num-val 8
#   python tools/train_text_tokenizer.py \
#       data/synthetic224/captions_train.jsonl \
#       data/synthetic224/text_spm --vocab-size 100 --field caption
#   tools/dist_train.sh configs/benchmarks/THIS_FILE 8
#   python tools/analysis_tools/summarize_benchmark.py \
#       work_dirs/THIS_FILE_WITHOUT_.py --gpus 8
# This file: DDP (mmengine's Runner) with bf16 autocast; the _deepspeed-zero2
# and _fsdp_ files inherit it and add one strategy file.
_base_ = ['../beit3/beit3-base-p16_64xb32x3-1m_pretrain.py']
data_root = 'data/synthetic224'
text_model = f'{data_root}/text_spm.model'
view_pipeline = [
    dict(type='LoadImageSafe'),
    dict(type='mmpretrain.ColorJitter', brightness=0.4, contrast=0.4,
         saturation=0.4),
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewCrop', size=224, second_size=224, scale=(0.08, 1.0),
         interpolation='bicubic', second_interpolation='lanczos'),
    dict(type='BlockwiseMaskGenerator', input_size=14, mask_ratio=0.4,
         min_num_patches=16, min_aspect=0.3),
]
train_dataloader = dict(
    image=dict(dataset=dict(data_root=data_root, data_prefix='images/train',
                            pipeline=view_pipeline + [
                                dict(type='PackFields')])),
    text=dict(dataset=dict(
        ann_file=f'{data_root}/captions_train.jsonl',
        field='caption',
        tokenizer=dict(model_file=text_model, max_length=64))),
    pair=dict(dataset=dict(
        data_root=data_root,
        ann_file='captions_train.jsonl',
        pipeline=view_pipeline + [
            dict(type='TokenizeText', model_file=text_model, max_length=64),
            dict(type='TextMasking', mask_id=64001, vocab_size=64010,
                 mask_ratio=0.5),
            dict(type='PackFields', pad_to=64),
        ])))
model = dict(tokenizer_checkpoint=None)
max_iters = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=50),
    dict(type='ConstantLR', factor=1., by_epoch=False, begin=50,
         end=max_iters),
]
train_cfg = dict(type='MultiSourceTrainLoop', max_iters=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_iters))
