"""Image classification labels for the generated demo scenes.

The class of a scene is the shape of its largest object (``circle``,
``square``, ``triangle`` or ``stripe``), read from the ``content_words`` of
the demo's caption lists (:func:`~mmvlp.datasets.make_demo_dataset`). Scenes
whose largest object is ambiguous (two shapes of different kinds drawn at
the same size class) are left out, so every label is defined by the image.
The output is mmpretrain's ``CustomDataset`` annotation format.
"""
import json
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence

from .demo_data import SHAPES

__all__ = ['DEMO_CLS_CLASSES', 'largest_shape', 'write_demo_classification']

#: Class names, in label order.
DEMO_CLS_CLASSES = tuple(SHAPES)
_WORDS_PER_SHAPE = 5  # size, colour, shape, vertical, horizontal


def largest_shape(content_words: Sequence[str]) -> Optional[str]:
    """The shape of the largest object of a scene, or None if ambiguous.

    Args:
        content_words (Sequence[str]): A scene's ``content_words`` (five per
            shape: size, colour, shape, vertical and horizontal position).

    Returns:
        str | None: A member of :data:`DEMO_CLS_CLASSES`, or None when two
        different shapes share the largest size class.
    """
    if not content_words or len(content_words) % _WORDS_PER_SHAPE:
        raise ValueError(f'content_words must hold {_WORDS_PER_SHAPE} words '
                         f'per shape, got {list(content_words)}.')
    objects = [content_words[i:i + _WORDS_PER_SHAPE]
               for i in range(0, len(content_words), _WORDS_PER_SHAPE)]
    large = [o for o in objects if o[0] == 'large']
    kinds = {o[2] for o in (large or objects)}
    return kinds.pop() if len(kinds) == 1 else None


def write_demo_classification(
        data_root: str,
        splits: Sequence[str] = ('train', 'val')) -> Dict[str, dict]:
    """Write ``cls_{split}.txt`` (``"images/train/00000.png 2"`` per line).

    Args:
        data_root (str): Output folder of ``make_demo_dataset`` (with
            ``captions_{split}.jsonl``); the annotation files go there too.
        splits (Sequence[str]): Splits to label.

    Returns:
        dict: Per split, ``kept``, ``skipped`` (ambiguous scenes) and the
        count per class name.
    """
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
                shape = largest_shape(record['content_words'])
                if shape is None:
                    skipped += 1
                    continue
                label = DEMO_CLS_CLASSES.index(shape)
                lines.append(f'{record["image"]} {label}')
                counts[shape] += 1
        with open(osp.join(data_root, f'cls_{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        summary[split] = dict(kept=len(lines), skipped=skipped,
                              classes={c: counts[c]
                                       for c in DEMO_CLS_CLASSES})
    return summary
