"""Inputs and resumable outputs of the offline tools.

``tools/tokenize_images.py`` (visual token ids) and
``tools/extract_features.py`` (embeddings) read the same kinds of input and
write their results the same way:

* inputs: a folder (searched recursively for images), a text file with one
  image path per line, or a jsonl file with an ``image`` field (paths
  relative to the file) and/or a text field (``caption`` or ``text``) per
  line (:func:`list_images`, :func:`list_records`);
* outputs: numbered shards (``shard_00000.npz``, or a folder
  ``shard_00000/`` of ``.npy`` files) written atomically, each with the ids
  of what it holds and of what was skipped and why; running the command
  again keeps the finished shards, so an interrupted run resumes where it
  stopped (:func:`run_in_shards`).

Unusable inputs (an unreadable image, an empty caption) are skipped and
counted by reason (the reasons of :data:`~mmvlp.datasets.skips.
SKIP_REASONS`), never dropped silently.
"""
import json
import os
import os.path as osp
import shutil
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.utils import ProgressBar, scandir

from .skips import BadDataError, check_caption

__all__ = [
    'IMAGE_EXTENSIONS', 'TEXT_FIELDS', 'InputRecord', 'ShardResult',
    'list_images', 'list_records', 'run_in_shards', 'shard_name'
]

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.tif', '.tiff',
                    '.webp')
#: Fields of a jsonl line that hold its text, in the order they are tried.
TEXT_FIELDS = ('caption', 'text')
SHARD_FORMATS = ('npz', 'npy')


@dataclass
class InputRecord:
    """One input of an offline tool.

    Attributes:
        id (str): What the outputs name it by (the image path, the jsonl
            ``id`` field, or ``<file>:<line>``).
        image (str, optional): Image path.
        text (str, optional): Text.
        skip_reason (str, optional): Known to be unusable while listing
            (e.g. ``'empty_caption'``); skipped and counted.
        extra (dict): The other fields of its jsonl line (e.g. labels).
    """
    id: str
    image: Optional[str] = None
    text: Optional[str] = None
    skip_reason: Optional[str] = None
    extra: dict = field(default_factory=dict)


def _resolve(path: str, root: str) -> str:
    return path if osp.isabs(path) else osp.join(root, path)


def list_images(data: str) -> List[str]:
    """Image paths of a folder, a path list or a jsonl file, in order.

    Args:
        data (str): A folder (searched recursively for
            :data:`IMAGE_EXTENSIONS`, sorted), a text file with one path per
            line, or a ``.jsonl`` file with an ``image`` field per line;
            relative paths are relative to the file.

    Returns:
        list[str]: The paths.
    """
    if osp.isdir(data):
        return sorted(
            osp.join(data, p) for p in scandir(
                data, suffix=IMAGE_EXTENSIONS, recursive=True,
                case_sensitive=False))
    return [r.image for r in list_records(data, 'image')]


def _read_jsonl(data: str, kind: str, text_field: Optional[str],
                root: str) -> List[InputRecord]:
    records = []
    with open(data, encoding='utf-8', errors='surrogateescape') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f'{data}:{number}'
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise ValueError('not a json object')
            except ValueError as error:
                raise ValueError(f'{where}: expected a json object '
                                 f'({error}).') from None
            record = InputRecord(id=str(item.get('id', where)))
            if kind in ('image', 'pair'):
                if 'image' not in item:
                    raise ValueError(f'{where}: expected an "image" field '
                                     f'for --kind {kind} (it has '
                                     f'{sorted(item)}).')
                record.image = _resolve(str(item['image']), root)
                if 'id' not in item:
                    record.id = record.image if kind == 'image' else where
            if kind in ('text', 'pair'):
                name = text_field or next(
                    (k for k in TEXT_FIELDS if k in item), None)
                if name is None or name not in item:
                    raise ValueError(
                        f'{where}: no text field ({text_field or TEXT_FIELDS}'
                        f'; it has {sorted(item)}); set the text field.')
                try:
                    record.text = check_caption(item[name], where)
                except BadDataError as error:
                    record.skip_reason = error.reason
            record.extra = {k: v for k, v in item.items()
                            if k not in ('id', 'image', text_field, *
                                         TEXT_FIELDS)}
            records.append(record)
    return records


def list_records(data: str,
                 kind: str = 'auto',
                 text_field: Optional[str] = None) -> List[InputRecord]:
    """The inputs of a folder, a path list or a jsonl file.

    Args:
        data (str): A folder of images, a text file with one image path per
            line, or a ``.jsonl`` file (an ``image`` field and/or a text
            field per line; an optional ``id`` field names the line).
        kind (str): ``'image'``, ``'text'``, ``'pair'`` (image and text of
            each jsonl line) or ``'auto'``: images for folders and path
            lists; for jsonl, texts when the first line has a text field,
            else images.
        text_field (str, optional): The jsonl text field (default: the
            first of :data:`TEXT_FIELDS` present).

    Returns:
        list[InputRecord]: In file order. Empty or non-UTF-8 texts come with
        their ``skip_reason``; malformed lines raise ``ValueError`` naming
        the line.
    """
    if kind not in ('auto', 'image', 'text', 'pair'):
        raise ValueError(f"kind must be 'auto', 'image', 'text' or 'pair', "
                         f'got {kind!r}.')
    if osp.isdir(data):
        if kind not in ('auto', 'image'):
            raise ValueError(f'{data} is a folder of images; texts and pairs '
                             'come from a jsonl file.')
        return [InputRecord(id=p, image=p) for p in list_images(data)]
    if not osp.isfile(data):
        raise FileNotFoundError(f'{data} is neither a folder nor a file.')
    root = osp.dirname(osp.abspath(data))
    if data.endswith('.jsonl'):
        if kind == 'auto':
            kind = 'image'
            with open(data, encoding='utf-8', errors='surrogateescape') as f:
                for line in f:
                    if line.strip():
                        try:
                            first = json.loads(line)
                        except ValueError:
                            break  # reported with its line number below
                        if isinstance(first, dict) and (
                                text_field in first if text_field else any(
                                    k in first for k in TEXT_FIELDS)):
                            kind = 'text'
                        break
        return _read_jsonl(data, kind, text_field, root)
    if kind not in ('auto', 'image'):
        raise ValueError(f'{data} is a list of image paths; texts and pairs '
                         'come from a .jsonl file.')
    with open(data, encoding='utf-8', errors='surrogateescape') as f:
        return [InputRecord(id=_resolve(line.strip(), root),
                            image=_resolve(line.strip(), root))
                for line in f if line.strip()]


def shard_name(index: int) -> str:
    """``shard_00000`` ... (without extension)."""
    return f'shard_{index:05d}'


@dataclass
class ShardResult:
    """What :func:`run_in_shards`' ``process`` returns for one shard.

    Attributes:
        arrays (dict): Arrays to save (the caller names them, e.g.
            ``ids`` and ``image_embed``); ``skipped`` and
            ``skipped_reasons`` are added.
        skipped (list[tuple[str, str]]): ``(id, reason)`` of the skipped
            inputs.
    """
    arrays: Dict[str, np.ndarray]
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def _save_shard(path: str, arrays: Dict[str, np.ndarray], fmt: str) -> None:
    """Write atomically: into a ``.partial`` name, then rename."""
    if fmt == 'npz':
        partial = path + '.partial.npz'
        np.savez(partial, **arrays)
        os.replace(partial, path)
        return
    partial = path + '.partial'
    if osp.isdir(partial):
        shutil.rmtree(partial)
    os.makedirs(partial)
    for key, value in arrays.items():
        np.save(osp.join(partial, f'{key}.npy'), value)
    os.replace(partial, path)


def _load_done(path: str, fmt: str, count_key: str
               ) -> Tuple[int, List[Tuple[str, str]]]:
    """Written count and skips of a finished shard."""
    if fmt == 'npz':
        with np.load(path) as done:
            arrays = {k: done[k] for k in (count_key, 'skipped',
                                           'skipped_reasons') if k in done}
    else:
        arrays = {k: np.load(osp.join(path, f'{k}.npy'))
                  for k in (count_key, 'skipped', 'skipped_reasons')
                  if osp.isfile(osp.join(path, f'{k}.npy'))}
    skipped = arrays.get('skipped', np.zeros(0, str)).tolist()
    reasons = arrays.get('skipped_reasons',
                         np.array(['unreadable_file'] * len(skipped))).tolist()
    return len(arrays[count_key]), list(zip(skipped, reasons))


def run_in_shards(items: Sequence,
                  out_dir: str,
                  shard_size: int,
                  process: Callable[[Sequence, Callable[[int], None]],
                                    ShardResult],
                  count_key: str,
                  fmt: str = 'npz',
                  show_progress: bool = True) -> dict:
    """Process ``items`` shard by shard, writing each shard once.

    A shard that exists from an earlier run is kept (its counts are read
    back); the others are computed by ``process`` and written atomically.

    Args:
        items (Sequence): All inputs, in order.
        out_dir (str): Output folder (created).
        shard_size (int): Inputs per shard.
        process (callable): ``process(shard_items, advance)`` returns a
            :class:`ShardResult`; it calls ``advance(n)`` after each batch of
            ``n`` inputs (the progress bar).
        count_key (str): The array whose length is the number of inputs a
            shard holds (e.g. ``'ids'``).
        fmt (str): ``'npz'`` (``shard_00000.npz``) or ``'npy'`` (a folder
            ``shard_00000/`` with one ``.npy`` per array).
        show_progress (bool): Show mmengine's progress bar.

    Returns:
        dict: ``written`` (inputs in the shards), ``shards``, ``resumed``
        (shards kept from an earlier run), ``skipped`` (``(id, reason)``
        pairs) and ``skipped_by_reason`` (counts).
    """
    if fmt not in SHARD_FORMATS:
        raise ValueError(f'fmt must be one of {SHARD_FORMATS}, got {fmt!r}.')
    if shard_size < 1:
        raise ValueError(f'shard_size must be >= 1, got {shard_size}.')
    os.makedirs(out_dir, exist_ok=True)
    shards = [items[i:i + shard_size]
              for i in range(0, len(items), shard_size)]
    progress = ProgressBar(len(items)) if show_progress and items else None

    def advance(count: int) -> None:
        if progress is not None:
            progress.update(count)

    written, resumed, skipped = 0, 0, []
    suffix = '.npz' if fmt == 'npz' else ''
    for index, shard in enumerate(shards):
        target = osp.join(out_dir, shard_name(index) + suffix)
        if osp.exists(target):  # finished in an earlier run
            count, shard_skips = _load_done(target, fmt, count_key)
            resumed += 1
            advance(len(shard))
        else:
            result = process(shard, advance)
            if count_key not in result.arrays:
                raise KeyError(f'process() returned no {count_key!r} array '
                               f'(it has {sorted(result.arrays)}).')
            shard_skips = list(result.skipped)
            arrays = dict(result.arrays)
            arrays['skipped'] = np.array([s[0] for s in shard_skips],
                                         dtype=str)
            arrays['skipped_reasons'] = np.array(
                [s[1] for s in shard_skips], dtype=str)
            _save_shard(target, arrays, fmt)
            count = len(result.arrays[count_key])
        written += count
        skipped.extend(shard_skips)
    if progress is not None:
        print()
    return dict(written=written, shards=len(shards), resumed=resumed,
                skipped=skipped,
                skipped_by_reason=dict(Counter(r for _, r in skipped)))
