# The transfer demo's segmentation task: UPerNet labels every pixel of the
# generated scenes as background or one of the 8 object colours, the concept
# the demo pretraining learned from its colour tokens and captions.
# Otherwise as upernet_beit3-tiny-p8_1xb8-300it_demo-shapes-ade-48x48.py,
# but twice as long at a higher learning rate: in 300 iterations at 4e-4
# neither a pretrained nor a scratch backbone got its decoder past
# "background everywhere" (mIoU 9.81 both).
#
#   python tools/data/make_demo_dense_data.py ade data/demo_ade_colors \
#       --label color
_base_ = ['./upernet_beit3-tiny-p8_1xb8-300it_demo-shapes-ade-48x48.py']

data_root = 'data/demo_ade_colors/'
# mmvlp.datasets.demo_seg_classes('color') / demo_seg_palette('color')
metainfo = dict(
    classes=('background', 'red', 'green', 'blue', 'yellow', 'purple',
             'orange', 'white', 'black'),
    palette=[[128, 128, 128], [220, 40, 40], [40, 170, 60], [40, 80, 220],
             [235, 210, 40], [140, 60, 180], [240, 140, 30], [245, 245, 245],
             [20, 20, 20]])
num_classes = len(metainfo['classes'])
model = dict(
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
dataset = dict(data_root=data_root, metainfo=metainfo)
train_dataloader = dict(dataset=dataset)
val_dataloader = dict(dataset=dataset)
test_dataloader = val_dataloader

max_iters = 600
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30,
         end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
