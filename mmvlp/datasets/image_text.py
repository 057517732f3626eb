"""Image-text pair datasets: jsonl / tsv lists and COCO-captions JSON."""
import csv
import json
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmvlp.datasets.skips import BadDataError, check_caption
from mmvlp.registry import DATASETS

FORMATS = ('jsonl', 'tsv', 'coco')


def _detect_format(ann_file: str) -> str:
    if ann_file.endswith('.jsonl'):
        return 'jsonl'
    if ann_file.endswith(('.tsv', '.txt')):
        return 'tsv'
    if ann_file.endswith('.json'):
        return 'coco'
    raise ValueError(f'Cannot tell the format of {ann_file}; set '
                     f'ann_format to one of {FORMATS}.')


def _read_records(ann_file: str, fmt: str) -> List[tuple]:
    """``(image path, caption, other fields)`` of every record."""
    records = []
    # Bytes that are not UTF-8 become lone surrogates: one bad caption is
    # skipped and counted instead of failing the whole list (the paths keep
    # their bytes, as os functions read surrogate-escaped names).
    with open(ann_file, encoding='utf-8', errors='surrogateescape') as f:
        if fmt == 'jsonl':
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    extra = {k: v for k, v in item.items()
                             if k not in ('image', 'caption')}
                    records.append((item['image'], item.get('caption'), extra))
                except (ValueError, KeyError) as error:
                    raise ValueError(
                        f'{ann_file}:{number}: expected '
                        f'{{"image": ..., "caption": ...}} ({error}).'
                    ) from None
        elif fmt == 'tsv':
            for number, row in enumerate(csv.reader(f, delimiter='\t'), 1):
                if not row:
                    continue
                if len(row) < 2:
                    raise ValueError(f'{ann_file}:{number}: expected '
                                     'path<TAB>caption.')
                records.append((row[0], row[1], {}))
        else:
            coco = json.load(f)
            files = {image['id']: image['file_name']
                     for image in coco['images']}
            for ann in coco['annotations']:
                records.append((files[ann['image_id']], ann['caption'], {}))
    return records


def load_image_text_list(ann_file: str,
                         ann_format: Optional[str] = None,
                         img_prefix: str = ''
                         ) -> Tuple[List[dict], Dict[str, int]]:
    """Read an image-caption list (the formats of :class:`ImageTextDataset`).

    Args:
        ann_file (str): jsonl, tsv or COCO-captions JSON file.
        ann_format (str, optional): ``'jsonl'``, ``'tsv'`` or ``'coco'``;
            detected from the extension when None.
        img_prefix (str): Joined in front of every image path.

    Returns:
        tuple: The samples (``img_path``, ``caption`` and the record's other
        fields) and the skipped records by reason (``empty_caption`` for
        empty or white-space captions, ``bad_encoding`` for captions that
        are not valid UTF-8; empty when none).
    """
    fmt = ann_format or _detect_format(ann_file)
    data_list, skips = [], {}
    for path, caption, extra in _read_records(ann_file, fmt):
        try:
            caption = check_caption(caption)
        except BadDataError as error:
            skips[error.reason] = skips.get(error.reason, 0) + 1
            continue
        data_list.append(
            dict(extra, img_path=osp.join(img_prefix, path), caption=caption))
    return data_list, skips


@DATASETS.register_module()
class ImageTextDataset(BaseDataset):
    """Pairs of an image and a caption.

    Annotation formats:

    * ``jsonl``: one ``{"image": path, "caption": text}`` object per line
      (CC3M/CC12M/LAION-style lists); other fields (e.g. ``content_words``)
      are kept in the sample;
    * ``tsv``: ``path<TAB>caption`` per line;
    * ``coco``: COCO-captions JSON (``images`` with ``id``/``file_name``,
      ``annotations`` with ``image_id``/``caption``), one sample per caption.

    Image paths are relative to ``data_root``/``data_prefix['img_path']``.
    Records with an empty, whitespace-only or non-UTF-8 caption are skipped,
    counted and reported (``num_skipped``, ``load_skips``), never silently
    dropped; long captions are kept (``TokenizeText`` truncates them). With
    ``LoadImageSafe`` as the first transform, unreadable images are skipped,
    replaced and counted too (see :mod:`mmvlp.datasets.skips`).

    Args:
        ann_file (str): The annotation file.
        ann_format (str, optional): ``'jsonl'``, ``'tsv'`` or ``'coco'``;
            detected from the extension when None.
        data_root (str): Root of ``ann_file`` and images.
        data_prefix (dict): ``dict(img_path=...)`` prefix of image paths.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments
            (``pipeline``, ``test_mode``, ...).
    """

    def __init__(self,
                 ann_file: str,
                 ann_format: str = None,
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 **kwargs) -> None:
        if ann_format is not None and ann_format not in FORMATS:
            raise ValueError(f'ann_format must be one of {FORMATS}, got '
                             f'{ann_format!r}.')
        self.ann_format = ann_format
        self.num_skipped = 0
        self.load_skips: Dict[str, int] = {}
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        data_list, skips = load_image_text_list(
            self.ann_file, self.ann_format,
            self.data_prefix.get('img_path', ''))
        self.load_skips = skips
        self.num_skipped = sum(skips.values())
        if self.num_skipped:
            print_log(
                f'ImageTextDataset({self.ann_file}): skipped '
                f'{self.num_skipped} record(s) ({skips}); '
                f'{len(data_list)} kept.',
                logger='current', level=30)
        return data_list
