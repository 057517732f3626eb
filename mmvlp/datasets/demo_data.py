"""A small synthetic image-caption dataset that the project generates itself.

Nothing can be downloaded here, so demos and tests train on images of simple
coloured shapes with captions that describe them ("a small red circle at the
top left and a large blue square at the bottom right on a grey background").
The content is deterministic for a seed.
"""
import json
import os
import os.path as osp
from typing import Dict, List, NamedTuple, Tuple

import numpy as np
from PIL import Image, ImageDraw

COLORS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 40, 40), 'green': (40, 170, 60), 'blue': (40, 80, 220),
    'yellow': (235, 210, 40), 'purple': (140, 60, 180),
    'orange': (240, 140, 30), 'white': (245, 245, 245),
    'black': (20, 20, 20),
}
BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {
    'grey': (128, 128, 128), 'light': (210, 205, 195), 'dark': (50, 55, 60),
    'teal': (60, 130, 130),
}
SHAPES = ('circle', 'square', 'triangle', 'stripe')
#: What a transfer task can label an object by: its shape or its colour
#: (class names in label order).
OBJECT_LABELS: Dict[str, Tuple[str, ...]] = dict(shape=SHAPES,
                                                 color=tuple(COLORS))


def object_classes(label: str) -> Tuple[str, ...]:
    """The class names of objects labelled by ``label``.

    Args:
        label (str): ``'shape'`` or ``'color'`` (see :data:`OBJECT_LABELS`).

    Returns:
        tuple[str]: Class names in label order.
    """
    if label not in OBJECT_LABELS:
        raise ValueError(f'Unknown label {label!r}; choose one of '
                         f'{sorted(OBJECT_LABELS)}.')
    return OBJECT_LABELS[label]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: List[int],
                color: Tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == 'circle':
        draw.ellipse(box, fill=color)
    elif shape == 'square':
        draw.rectangle(box, fill=color)
    elif shape == 'triangle':
        draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=color)
    else:  # a few horizontal stripes
        step = max(2, (y1 - y0) // 5)
        for y in range(y0, y1, 2 * step):
            draw.rectangle([x0, y, x1, min(y + step, y1)], fill=color)


def _where(center: float, size: int, names: Tuple[str, str, str]) -> str:
    return names[min(2, int(3 * center / size))]


class SceneShape(NamedTuple):
    """One shape drawn in a scene by :func:`make_scene`.

    Attributes:
        shape (str): One of :data:`SHAPES`.
        color (str): A key of :data:`COLORS`.
        large (bool): Whether it was drawn large.
        box (tuple): ``(x0, y0, x1, y1)`` inclusive pixel box it was drawn in.
        mask (np.ndarray): ``(size, size)`` bool, the pixels of this shape
            that stay visible (later shapes are drawn on top).
    """
    shape: str
    color: str
    large: bool
    box: Tuple[int, int, int, int]
    mask: np.ndarray


def make_scene(rng: np.random.Generator,
               size: int,
               shape_scale: float = 1.
               ) -> Tuple[Image.Image, str, List[SceneShape]]:
    """One image of 1-2 shapes with what was drawn where.

    :func:`make_sample` draws the same image from the same random state (it
    is built on this function), so detection and segmentation datasets share
    the scenes of the captioned demo data. Small shapes have sides of
    1/6-1/4 of the image, large ones 1/3-1/2, both times ``shape_scale``
    (at most the image).

    Args:
        rng (np.random.Generator): Source of randomness.
        size (int): Image side in pixels.
        shape_scale (float): Factor on the shapes' sides. Defaults to 1.

    Returns:
        tuple: The RGB image, the background name (a key of
        :data:`BACKGROUNDS`) and the shapes in drawing order, each with its
        visible mask.
    """
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    image = Image.new('RGB', (size, size), BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    drawn = []
    for _ in range(int(rng.integers(1, 3))):
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = list(COLORS)[rng.integers(len(COLORS))]
        large = bool(rng.integers(2))
        low, high = (size // 3, size // 2) if large else (size // 6,
                                                          size // 4)
        if shape_scale != 1:
            low = min(size, round(low * shape_scale))
            high = min(size, max(low, round(high * shape_scale)))
        side = int(rng.integers(low, high + 1))
        x0 = int(rng.integers(0, size - side + 1))
        y0 = int(rng.integers(0, size - side + 1))
        box = [x0, y0, x0 + side - 1, y0 + side - 1]
        _draw_shape(draw, shape, box, COLORS[color])
        footprint = Image.new('L', (size, size), 0)
        _draw_shape(ImageDraw.Draw(footprint), shape, box, 255)
        drawn.append((shape, color, large, tuple(box),
                      np.asarray(footprint) > 0))
    shapes = []
    for index, (shape, color, large, box, mask) in enumerate(drawn):
        for *_, above in drawn[index + 1:]:
            mask = mask & ~above
        shapes.append(SceneShape(shape, color, large, box, mask))
    return image, background, shapes


def make_sample(rng: np.random.Generator,
                size: int,
                shape_scale: float = 1.
                ) -> Tuple[Image.Image, str, List[str], list]:
    """One image of 1-2 shapes and its caption.

    Each shape is described by size, colour, shape and position words
    ("a small red circle at the top left"), the background by its colour.

    Args:
        rng (np.random.Generator): Source of randomness.
        size (int): Image side in pixels.
        shape_scale (float): Factor on the shapes' sides (see
            :func:`make_scene`). Defaults to 1.

    Returns:
        tuple: The RGB image, its caption, the words that describe what is
        drawn (size, colour, shape, position of each shape) and the RGB
        background colour.
    """
    image, background, shapes = make_scene(rng, size, shape_scale)
    words = [describe_shape(item, size) for item in shapes]
    caption = caption_of(words, background)
    content = [w for item in words for w in (
        item['size'], item['color'], item['shape'], item['vertical'],
        item['horizontal'])]
    return image, caption, content, list(BACKGROUNDS[background])


def describe_shape(item: SceneShape, size: int) -> Dict[str, str]:
    """The words that describe a drawn shape: ``size`` (small/large),
    ``color``, ``shape``, ``vertical`` (top/middle/bottom) and
    ``horizontal`` (left/center/right) position of its centre."""
    x0, y0, x1, _ = item.box
    side = x1 - x0 + 1
    return dict(
        size='large' if item.large else 'small', color=item.color,
        shape=item.shape,
        vertical=_where(y0 + side / 2, size, ('top', 'middle', 'bottom')),
        horizontal=_where(x0 + side / 2, size, ('left', 'center', 'right')))


def caption_of(words: List[Dict[str, str]], background: str) -> str:
    """The demo caption of shapes described by :func:`describe_shape`, in
    the given order, on a background."""
    parts = [f'a {w["size"]} {w["color"]} {w["shape"]} at the '
             f'{w["vertical"]} {w["horizontal"]}' for w in words]
    return ' and '.join(parts) + f' on a {background} background'


def make_demo_dataset(out_dir: str,
                      num_train: int = 512,
                      num_val: int = 128,
                      size: int = 64,
                      seed: int = 0,
                      shape_scale: float = 1.) -> Dict[str, int]:
    """Write ``images/{train,val}/*.png`` and ``captions_{train,val}.jsonl``.

    Each jsonl line is ``{"image": "images/train/00000.png", "caption":
    "...", "content_words": [...], "background": [r, g, b]}`` with paths
    relative to ``out_dir``; ``content_words`` are the caption words that
    describe the shapes (what a model can only know from the image), and
    ``background`` tells foreground pixels apart. Existing files are
    overwritten.

    Args:
        out_dir (str): Output folder.
        num_train (int): Training images.
        num_val (int): Held-out images (different random draws).
        size (int): Image side.
        seed (int): Seed; the same seed gives the same dataset.
        shape_scale (float): Factor on the shapes' sides (see
            :func:`make_scene`).

    Returns:
        dict: Number of images written per split.
    """
    if size < 16:
        raise ValueError(f'size must be at least 16 pixels, got {size}.')
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in (('train', num_train), ('val', num_val)):
        folder = osp.join(out_dir, 'images', split)
        os.makedirs(folder, exist_ok=True)
        with open(osp.join(out_dir, f'captions_{split}.jsonl'), 'w') as f:
            for index in range(count):
                image, caption, content, background = make_sample(
                    rng, size, shape_scale)
                name = f'images/{split}/{index:05d}.png'
                image.save(osp.join(out_dir, name))
                f.write(json.dumps(dict(
                    image=name, caption=caption, content_words=content,
                    background=background)) + '\n')
        written[split] = count
    return written
