# The transfer demo's classification task: the colour of the largest object
# of a generated scene (8 classes), the concept the demo pretraining learned
# from its colour tokens and captions. Otherwise as beit3-tiny-p8_demo-cls.py
# (which classifies the shape).
#
#   python tools/data/make_demo_cls_data.py --label color \
#       --out data/demo_cls_colors
#   python tools/train.py configs/mmpretrain/beit3-tiny-p8_demo-cls-colors.py
_base_ = ['./beit3-tiny-p8_demo-cls.py']

data_root = 'data/demo_cls_colors'
classes = ('red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white',
           'black')
data_preprocessor = dict(num_classes=len(classes))
model = dict(head=dict(num_classes=len(classes)))
dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(dataset=dataset)
val_dataloader = dict(dataset=dataset)
test_dataloader = val_dataloader
