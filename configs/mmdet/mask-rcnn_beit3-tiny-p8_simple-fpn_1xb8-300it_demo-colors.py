# The transfer demo's detection task: Mask R-CNN finds the objects of the
# generated scenes by colour (8 categories), the concept the demo
# pretraining learned from its colour tokens and captions. Otherwise as
# mask-rcnn_beit3-tiny-p8_simple-fpn_1xb8-300it_demo-shapes.py.
#
#   python tools/data/make_demo_dense_data.py coco data/demo_coco_colors \
#       --label color
_base_ = ['./mask-rcnn_beit3-tiny-p8_simple-fpn_1xb8-300it_demo-shapes.py']

data_root = 'data/demo_coco_colors/'
metainfo = dict(classes=('red', 'green', 'blue', 'yellow', 'purple',
                         'orange', 'white', 'black'))
num_classes = len(metainfo['classes'])
model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=num_classes),
        mask_head=dict(num_classes=num_classes)))
dataset = dict(data_root=data_root, metainfo=metainfo)
train_dataloader = dict(dataset=dataset)
val_dataloader = dict(dataset=dataset)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
