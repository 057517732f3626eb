"""Detection and segmentation datasets written from the synthetic scenes.

The scenes of :mod:`mmvlp.datasets.demo_data` (1-2 coloured shapes on a
plain background) come with the box and visible mask of every shape, so the
same generator yields

* a COCO-format instance dataset (:func:`make_demo_coco`): the layout of
  COCO 2017 (``train2017/``, ``val2017/``,
  ``annotations/instances_{train,val}2017.json``) with the four shapes as
  categories (or the eight colours, ``label='color'``), boxes, polygon or
  RLE masks; mmdet's ``CocoDataset`` and ``CocoMetric`` read it with
  ``metainfo=dict(classes=DEMO_DET_CLASSES)``;
* an ADE20K-format semantic segmentation dataset (:func:`make_demo_ade`):
  the layout of ``ADEChallengeData2016`` (``images/{training,validation}/
  *.jpg``, ``annotations/{training,validation}/*.png``) where, as in ADE20K,
  label 0 is "other" (ignored with ``reduce_zero_label=True``) and labels
  1..5 are ``DEMO_SEG_CLASSES`` (background and the four shapes; with
  ``label='color'``, 1..9 are background and the eight colours, see
  :func:`demo_seg_classes`).

Both are deterministic for a seed and small enough to build in tests.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from .demo_data import COLORS, SHAPES, SceneShape, make_scene, object_classes

#: COCO categories of the demo detection data (ids 1..4 in this order).
DEMO_DET_CLASSES = SHAPES
#: Semantic classes of the demo segmentation data (PNG labels 1..5; 0 is
#: ignored as ADE20K's "other").
DEMO_SEG_CLASSES = ('background', ) + SHAPES
#: A palette for visualising ``DEMO_SEG_CLASSES``.
DEMO_SEG_PALETTE = [[128, 128, 128], [220, 40, 40], [40, 170, 60],
                    [40, 80, 220], [235, 210, 40]]
MASK_FORMATS = ('polygon', 'rle')

_COCO_SPLITS = (('train', 'train2017'), ('val', 'val2017'))
_ADE_SPLITS = (('train', 'training'), ('val', 'validation'))


def _check(size: int, counts: Dict[str, int]) -> None:
    if size < 16:
        raise ValueError(f'size must be at least 16 pixels, got {size}.')
    for split, count in counts.items():
        if count < 1:
            raise ValueError(f'num_{split} must be at least 1, got {count}.')


def _mask_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of a binary mask as COCO polygons (pixel corners)."""
    import cv2
    # Trace the mask upsampled 2x so that contours run along pixel edges
    # (a plain trace runs through pixel centres and loses half a pixel all
    # around, i.e. whole 1-2 pixel stripes).
    big = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64)
        if len(points) < 3:
            continue
        # Corner coordinates: a run of upsampled pixels [2a, 2b+1] covers
        # the original pixels [a, b], i.e. the interval [a, b + 1].
        points = (points + (points % 2 == 1)) / 2
        polygons.append([round(float(v), 2) for v in points.reshape(-1)])
    return polygons


def demo_seg_classes(label: str = 'shape') -> Tuple[str, ...]:
    """Semantic classes of the demo segmentation data: background, then
    the object classes of ``label`` (``'shape'``: ``DEMO_SEG_CLASSES``)."""
    return ('background', ) + object_classes(label)


def demo_seg_palette(label: str = 'shape') -> List[List[int]]:
    """A palette for :func:`demo_seg_classes` (the drawn colours when
    objects are labelled by colour)."""
    if label == 'color':
        return [[128, 128, 128]] + [list(COLORS[c]) for c in COLORS]
    object_classes(label)  # raises for an unknown label
    return DEMO_SEG_PALETTE


def _object_class(item: SceneShape, label: str) -> str:
    return item.color if label == 'color' else item.shape


def _coco_annotation(item: SceneShape, mask_format: str,
                     classes: Tuple[str, ...],
                     label: str) -> Optional[dict]:
    ys, xs = np.nonzero(item.mask)
    if len(xs) == 0:
        return None
    x0, y0 = int(xs.min()), int(ys.min())
    width, height = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
    if mask_format == 'rle':
        from pycocotools import mask as mask_utils
        rle = mask_utils.encode(np.asfortranarray(item.mask.astype(np.uint8)))
        segmentation = dict(size=[int(s) for s in rle['size']],
                            counts=rle['counts'].decode('ascii'))
    else:
        segmentation = _mask_polygons(item.mask)
        if not segmentation:
            return None
    return dict(
        category_id=classes.index(_object_class(item, label)) + 1,
        bbox=[x0, y0, width, height],
        area=float(item.mask.sum()),
        segmentation=segmentation,
        iscrowd=0)


def make_demo_coco(out_dir: str,
                   num_train: int = 256,
                   num_val: int = 64,
                   size: int = 48,
                   seed: int = 0,
                   mask_format: str = 'polygon',
                   min_area: int = 4,
                   label: str = 'shape') -> Dict[str, int]:
    """Write a COCO-format instance dataset of the synthetic scenes.

    Layout (COCO 2017 names, so stock configs only change ``data_root``)::

        out_dir/train2017/000000.jpg ...
        out_dir/val2017/000000.jpg ...
        out_dir/annotations/instances_train2017.json
        out_dir/annotations/instances_val2017.json

    Every shape is one instance of its category (``DEMO_DET_CLASSES``,
    ids 1..4, or its colour with ``label='color'``) with its visible mask
    (later shapes occlude earlier ones), the tight box of that mask
    (``[x, y, w, h]``) and its pixel area.
    Shapes with fewer than ``min_area`` visible pixels are left out.

    Args:
        out_dir (str): Output folder (created; files are overwritten).
        num_train (int): Training images.
        num_val (int): Validation images (later draws of the same
            generator, so different scenes).
        size (int): Image side in pixels.
        seed (int): Seed; the same seed gives the same dataset.
        mask_format (str): ``'polygon'`` (outer contours along pixel edges)
            or ``'rle'`` (compressed RLE, exact).
        min_area (int): Smallest visible area kept, in pixels.
        label (str): Categories: ``'shape'`` (``DEMO_DET_CLASSES``) or
            ``'color'`` (the eight colours of the scenes).

    Returns:
        dict: Images written per split (``'train'``, ``'val'``) and
        instances (``'train_instances'``, ``'val_instances'``).
    """
    _check(size, dict(train=num_train, val=num_val))
    if mask_format not in MASK_FORMATS:
        raise ValueError(f'mask_format must be one of {MASK_FORMATS}, got '
                         f'{mask_format!r}.')
    classes = object_classes(label)
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory=label)
                  for i, name in enumerate(classes)]
    written = {}
    for split, folder in _COCO_SPLITS:
        count = num_train if split == 'train' else num_val
        os.makedirs(osp.join(out_dir, folder), exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image, _, shapes = make_scene(rng, size)
            file_name = f'{index:06d}.jpg'
            image.save(osp.join(out_dir, folder, file_name), quality=95)
            image_id = index + 1
            images.append(dict(id=image_id, file_name=file_name,
                               width=size, height=size))
            for item in shapes:
                ann = _coco_annotation(item, mask_format, classes, label)
                if ann is None or ann['area'] < min_area:
                    continue
                ann.update(id=len(annotations) + 1, image_id=image_id)
                annotations.append(ann)
        with open(osp.join(out_dir, 'annotations',
                           f'instances_{folder}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
        written[split] = count
        written[f'{split}_instances'] = len(annotations)
    return written


def scene_label_map(shapes: List[SceneShape], size: int,
                    label: str = 'shape') -> np.ndarray:
    """ADE-style label map of a scene: 1 = background, 2.. = objects.

    Args:
        shapes (list[SceneShape]): The shapes from :func:`make_scene`.
        size (int): Image side.
        label (str): Object classes by ``'shape'`` or ``'color'``.

    Returns:
        np.ndarray: ``(size, size)`` uint8; value ``1 + i`` is class ``i`` of
        ``demo_seg_classes(label)`` (0 = ignored "other", unused here).
    """
    classes = demo_seg_classes(label)
    label_map = np.ones((size, size), np.uint8)
    for item in shapes:  # visible masks do not overlap
        label_map[item.mask] = classes.index(_object_class(item, label)) + 1
    return label_map


def make_demo_ade(out_dir: str,
                  num_train: int = 256,
                  num_val: int = 64,
                  size: int = 48,
                  seed: int = 0,
                  label: str = 'shape') -> Dict[str, int]:
    """Write an ADE20K-format semantic segmentation dataset of the scenes.

    Layout (``ADEChallengeData2016``'s)::

        out_dir/images/training/000000.jpg ...
        out_dir/images/validation/000000.jpg ...
        out_dir/annotations/training/000000.png ...   (uint8 labels)
        out_dir/annotations/validation/000000.png ...

    Labels follow ADE20K: 0 is "other" and is ignored by
    ``reduce_zero_label=True``, which maps 1..5 to the classes
    ``DEMO_SEG_CLASSES`` (background, circle, square, triangle, stripe).
    Read it with mmseg's ``BaseSegDataset`` (``img_suffix='.jpg'``,
    ``seg_map_suffix='.png'``, ``reduce_zero_label=True``,
    ``metainfo=dict(classes=DEMO_SEG_CLASSES, palette=DEMO_SEG_PALETTE)``);
    ``ADE20KDataset`` itself only accepts subsets of ADE's 150 classes.
    With ``label='color'`` the classes are :func:`demo_seg_classes`
    ``('color')`` (background and the eight colours).

    Args:
        out_dir (str): Output folder (created; files are overwritten).
        num_train (int): Training images.
        num_val (int): Validation images (later draws, different scenes).
        size (int): Image side in pixels.
        seed (int): Seed; the same seed gives the same dataset.
        label (str): Object classes by ``'shape'`` or ``'color'``.

    Returns:
        dict: Images written per split.
    """
    _check(size, dict(train=num_train, val=num_val))
    object_classes(label)  # raises for an unknown label
    rng = np.random.default_rng(seed)
    written = {}
    for split, folder in _ADE_SPLITS:
        count = num_train if split == 'train' else num_val
        image_dir = osp.join(out_dir, 'images', folder)
        label_dir = osp.join(out_dir, 'annotations', folder)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        for index in range(count):
            image, _, shapes = make_scene(rng, size)
            image.save(osp.join(image_dir, f'{index:06d}.jpg'), quality=95)
            Image.fromarray(scene_label_map(shapes, size, label)).save(
                osp.join(label_dir, f'{index:06d}.png'))
        written[split] = count
    return written


__all__ = [
    'make_demo_coco', 'make_demo_ade', 'scene_label_map', 'DEMO_DET_CLASSES',
    'DEMO_SEG_CLASSES', 'DEMO_SEG_PALETTE', 'demo_seg_classes',
    'demo_seg_palette'
]
