"""Image classification labels for the generated demo scenes.

The class of a scene is an attribute of its largest object: its shape
(``circle``, ``square``, ``triangle`` or ``stripe``) or its colour (the
eight colours of :data:`~mmvlp.datasets.demo_data.COLORS`), read from the
``content_words`` of the demo's caption lists
(:func:`~mmvlp.datasets.make_demo_dataset`). Scenes whose largest object is
ambiguous (two objects of the same size class that differ in the attribute)
are left out, so every label is defined by the image. The output is
mmpretrain's ``CustomDataset`` annotation format.
"""
import json
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence

from .demo_data import OBJECT_LABELS, object_classes

__all__ = [
    'DEMO_CLS_CLASSES', 'largest_attribute', 'largest_shape',
    'write_demo_classification'
]

#: The shape classes (the default label).
DEMO_CLS_CLASSES = OBJECT_LABELS['shape']
_WORDS_PER_SHAPE = 5  # size, colour, shape, vertical, horizontal
_POSITION = dict(color=1, shape=2)  # of the attribute among the five words


def largest_attribute(content_words: Sequence[str],
                      attribute: str = 'shape') -> Optional[str]:
    """An attribute of the largest object of a scene, or None if ambiguous.

    Args:
        content_words (Sequence[str]): A scene's ``content_words`` (five per
            shape: size, colour, shape, vertical and horizontal position).
        attribute (str): ``'shape'`` or ``'color'``.

    Returns:
        str | None: The attribute's value, or None when two objects of the
        largest size class differ in it.
    """
    object_classes(attribute)  # raises for an unknown attribute
    if not content_words or len(content_words) % _WORDS_PER_SHAPE:
        raise ValueError(f'content_words must hold {_WORDS_PER_SHAPE} words '
                         f'per shape, got {list(content_words)}.')
    objects = [content_words[i:i + _WORDS_PER_SHAPE]
               for i in range(0, len(content_words), _WORDS_PER_SHAPE)]
    large = [o for o in objects if o[0] == 'large']
    values = {o[_POSITION[attribute]] for o in (large or objects)}
    return values.pop() if len(values) == 1 else None


def largest_shape(content_words: Sequence[str]) -> Optional[str]:
    """The shape of the largest object of a scene, or None if ambiguous
    (:func:`largest_attribute` with ``attribute='shape'``)."""
    return largest_attribute(content_words, 'shape')


def write_demo_classification(data_root: str,
                              splits: Sequence[str] = ('train', 'val'),
                              label: str = 'shape') -> Dict[str, dict]:
    """Write ``cls_{split}.txt`` (``"images/train/00000.png 2"`` per line).

    Args:
        data_root (str): Output folder of ``make_demo_dataset`` (with
            ``captions_{split}.jsonl``); the annotation files go there too.
        splits (Sequence[str]): Splits to label.
        label (str): The attribute of the largest object that is the class:
            ``'shape'`` or ``'color'`` (see
            :data:`~mmvlp.datasets.demo_data.OBJECT_LABELS`).

    Returns:
        dict: Per split, ``kept``, ``skipped`` (ambiguous scenes) and the
        count per class name.
    """
    classes = object_classes(label)
    summary = {}
    for split in splits:
        source = osp.join(data_root, f'captions_{split}.jsonl')
        if not osp.isfile(source):
            raise FileNotFoundError(
                f'{source} does not exist; generate the scenes first '
                '(tools/data/make_demo_data.py or tools/data/'
                'make_demo_cls_data.py).')
        lines: List[str] = []
        counts: Counter = Counter()
        skipped = 0
        with open(source) as f:
            for row in f:
                if not row.strip():
                    continue
                record = json.loads(row)
                value = largest_attribute(record['content_words'], label)
                if value is None:
                    skipped += 1
                    continue
                lines.append(f'{record["image"]} {classes.index(value)}')
                counts[value] += 1
        with open(osp.join(data_root, f'cls_{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        summary[split] = dict(kept=len(lines), skipped=skipped,
                              classes={c: counts[c] for c in classes})
    return summary
