# BEiT-3 base fine-tuned for Flickr30K image-text retrieval at 384.
#
# The official recipe (get_started_for_retrieval.md): as COCO but
#   --task flickr30k --lr 1e-4 --epochs 20 --warmup_epochs 5.
# Layout: data/flickr30k/dataset_flickr30k.json (Karpathy split),
#   data/flickr30k/flickr30k-images/*.jpg
_base_ = ['./beit3-base-p16-384_16xb192-15e_coco-retrieval.py']
flickr = dict(data_root='data/flickr30k', ann_file='dataset_flickr30k.json',
              data_prefix=dict(img_path='flickr30k-images'))
train_dataloader = dict(dataset=dict(splits=['train'], **flickr))
val_dataloader = dict(dataset=dict(splits=['val'], **flickr))
test_dataloader = dict(dataset=dict(splits=['test'], **flickr))

lr = 1e-4
min_lr = 1e-6
warmup_lr = 1e-6
max_epochs = 20
warmup_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
