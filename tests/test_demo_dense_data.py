"""COCO- and ADE20K-format datasets written from the synthetic scenes."""
import json

import numpy as np
import pytest
from PIL import Image

from mmvlp.datasets import (DEMO_DET_CLASSES, DEMO_SEG_CLASSES,
                            make_demo_ade, make_demo_coco, make_scene)
from mmvlp.datasets.demo_data import COLORS, make_sample
from mmvlp.datasets.demo_dense import (demo_seg_classes, demo_seg_palette,
                                       scene_label_map)


def test_scene_is_the_captioned_sample():
    """make_sample is built on make_scene: same image, and the caption
    names the shapes of the scene in order."""
    for seed in range(5):
        image, _, shapes = make_scene(np.random.default_rng(seed), 48)
        sample, _, content, _ = make_sample(np.random.default_rng(seed), 48)
        assert np.array_equal(np.asarray(image), np.asarray(sample))
        assert content[2::5] == [s.shape for s in shapes]
        masks = np.stack([s.mask for s in shapes])
        assert masks.sum(0).max() <= 1  # visible masks do not overlap
        assert shapes[-1].mask.any()  # the top shape is always visible
        for item in shapes:
            x0, y0, x1, y1 = item.box
            outside = item.mask.copy()
            outside[y0:y1 + 1, x0:x1 + 1] = False
            assert not outside.any()


def test_coco_files_and_masks(tmp_path):
    from pycocotools.coco import COCO
    counts = make_demo_coco(str(tmp_path / 'poly'), 12, 4, seed=3)
    make_demo_coco(str(tmp_path / 'rle'), 12, 4, seed=3, mask_format='rle')
    assert counts['train'] == 12 and counts['val'] == 4
    poly = COCO(str(tmp_path / 'poly/annotations/instances_train2017.json'))
    rle = COCO(str(tmp_path / 'rle/annotations/instances_train2017.json'))
    assert [c['name'] for c in poly.loadCats(poly.getCatIds())] == \
        list(DEMO_DET_CLASSES)
    assert len(poly.anns) == counts['train_instances'] == len(rle.anns)
    ious = []
    for ann_id, ann in rle.anns.items():
        mask = rle.annToMask(ann).astype(bool)
        assert mask.sum() == ann['area']
        ys, xs = np.nonzero(mask)
        assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                               ys.max() - ys.min() + 1]
        approx = poly.annToMask(poly.anns[ann_id]).astype(bool)
        ious.append((mask & approx).sum() / (mask | approx).sum())
    assert np.mean(ious) > 0.97  # polygons run along pixel edges
    image = Image.open(tmp_path / 'poly/train2017' /
                       poly.imgs[1]['file_name'])
    assert image.size == (48, 48)
    # The same seed gives the same dataset.
    make_demo_coco(str(tmp_path / 'again'), 12, 4, seed=3)
    for name in ('instances_train2017.json', 'instances_val2017.json'):
        assert json.loads((tmp_path / 'poly/annotations' / name).read_text()) \
            == json.loads((tmp_path / 'again/annotations' / name).read_text())


def test_ade_labels(tmp_path):
    make_demo_ade(str(tmp_path), 6, 3, size=32, seed=1)
    rng = np.random.default_rng(1)
    for index in range(6):
        image, _, shapes = make_scene(rng, 32)
        label = np.asarray(Image.open(
            tmp_path / f'annotations/training/{index:06d}.png'))
        assert label.dtype == np.uint8 and label.shape == (32, 32)
        assert np.array_equal(label, scene_label_map(shapes, 32))
        assert label.min() >= 1 and label.max() <= len(DEMO_SEG_CLASSES)
        for item in shapes:
            assert (label[item.mask] ==
                    DEMO_SEG_CLASSES.index(item.shape) + 1).all()
    assert len(list((tmp_path / 'images/validation').glob('*.jpg'))) == 3


def test_objects_labelled_by_colour(tmp_path):
    """label='color': the categories (COCO) and classes (ADE) are the
    eight colours, and every object gets the colour it was drawn in."""
    from pycocotools.coco import COCO
    colours = tuple(COLORS)
    make_demo_coco(str(tmp_path / 'coco'), 8, 2, seed=4, label='color')
    coco = COCO(str(tmp_path / 'coco/annotations/instances_train2017.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == \
        list(colours)
    rng = np.random.default_rng(4)
    for image_id in range(1, 9):
        _, _, shapes = make_scene(rng, 48)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        drawn = [s.color for s in shapes if s.mask.sum() >= 4]
        assert [colours[a['category_id'] - 1] for a in anns] == drawn

    assert demo_seg_classes('color') == ('background', ) + colours
    palette = demo_seg_palette('color')
    assert len(palette) == 9 and palette[1] == list(COLORS['red'])
    make_demo_ade(str(tmp_path / 'ade'), 4, 2, size=32, seed=2,
                  label='color')
    rng = np.random.default_rng(2)
    for index in range(4):
        _, _, shapes = make_scene(rng, 32)
        label = np.asarray(Image.open(
            tmp_path / f'ade/annotations/training/{index:06d}.png'))
        assert np.array_equal(label, scene_label_map(shapes, 32, 'color'))
        for item in shapes:
            assert (label[item.mask] == colours.index(item.color) + 2).all()
        assert (label[~np.any([s.mask for s in shapes], 0)] == 1).all()
    with pytest.raises(ValueError, match="Unknown label 'size'"):
        make_demo_ade(str(tmp_path / 'bad'), 2, 1, label='size')


def test_toolbox_datasets_read_them(tmp_path):
    """mmdet's CocoDataset and mmseg's BaseSegDataset (ADE conventions)
    load the files through their own pipelines."""
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import BaseSegDataset
    from mmengine.registry import init_default_scope
    make_demo_coco(str(tmp_path / 'coco'), 4, 2)
    make_demo_ade(str(tmp_path / 'ade'), 4, 2)
    init_default_scope('mmdet')
    det = CocoDataset(
        data_root=str(tmp_path / 'coco'),
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=DEMO_DET_CLASSES),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True,
                       with_mask=True),
                  dict(type='PackDetInputs')])
    sample = det[0]['data_samples']
    assert len(sample.gt_instances) >= 1
    assert sample.gt_instances.masks.masks.any()
    init_default_scope('mmseg')
    seg = BaseSegDataset(
        data_root=str(tmp_path / 'ade'),
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
        metainfo=dict(classes=DEMO_SEG_CLASSES),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')])
    assert len(seg) == 4
    labels = seg[0]['data_samples'].gt_sem_seg.data
    assert set(labels.unique().tolist()) <= set(range(5))
    assert 0 in labels.unique().tolist()  # background, after reduction


@pytest.mark.parametrize('kwargs,message', [
    (dict(size=8), 'at least 16 pixels'),
    (dict(num_val=0), 'num_val must be at least 1'),
    (dict(mask_format='bitmap'), "mask_format must be one of"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_demo_coco(str(tmp_path), **kwargs)
