# What the BEiT-3 vision-language dataset bases share (unilm beit3/
# datasets.py): pixels scaled to [-1, 1] (mean = std = 127.5), 10 workers
# per loader, shuffled training batches without the last partial one,
# evaluation in order; batches in pinned memory, copied to the GPU without
# blocking. Each dataset base inherits this file and adds its batch sizes,
# datasets and pipelines.
data_preprocessor = dict(
    type='mmvlp.VLDataPreprocessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True,
    non_blocking=True)
train_dataloader = dict(
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
val_dataloader = dict(
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'))
test_dataloader = val_dataloader
