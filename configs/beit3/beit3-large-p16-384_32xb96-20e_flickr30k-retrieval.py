# BEiT-3 large fine-tuned for Flickr30K image-text retrieval at 384.
#
# The official recipe (get_started_for_retrieval.md): as large COCO but
#   --task flickr30k --epochs 20 --warmup_epochs 5.
# Evaluate the released beit3_large_patch16_384_f30k_retrieval.pth as it is
# (docs/model_zoo.md):
#   tools/test.py \
#       configs/beit3/beit3-large-p16-384_32xb96-20e_flickr30k-retrieval.py \
#       beit3_large_patch16_384_f30k_retrieval.pth
_base_ = ['./beit3-large-p16-384_32xb96-15e_coco-retrieval.py']
flickr = dict(data_root='data/flickr30k', ann_file='dataset_flickr30k.json',
              data_prefix=dict(img_path='flickr30k-images'))
train_dataloader = dict(dataset=dict(splits=['train'], **flickr))
val_dataloader = dict(dataset=dict(splits=['val'], **flickr))
test_dataloader = dict(dataset=dict(splits=['test'], **flickr))

lr = 5e-5
min_lr = 1e-6
warmup_lr = 1e-6
max_epochs = 20
warmup_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_lr / lr, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=min_lr / lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
