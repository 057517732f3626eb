"""Write the visual token ids of a set of images (offline MIM targets).

Usage:
    python tools/tokenize_images.py CONFIG CHECKPOINT --data DATA --out OUT
        [--shard-size 1024] [--batch-size 64] [--device cpu] [--compile]

DATA is a folder (searched recursively for images), a text file with one
image path per line, or a jsonl file with an ``image`` field per line (paths
relative to the file). Each image is resized (shorter side) and centre-cropped
to the tokenizer's input size.

OUT receives ``shard_00000.npz`` ... (``ids``: ``(n, h, w)`` token ids,
``paths``: the images, in order) and ``meta.json``. Shards are written
atomically; running the command again skips finished shards, so an
interrupted run resumes where it stopped. Unreadable images are skipped,
counted and listed in ``meta.json``.
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional, Tuple

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmvlp  # noqa: F401  (compatibility fixes, registries)
from mmvlp.datasets.offline_shards import (ShardResult, list_images,
                                           run_in_shards)
from mmvlp.datasets.skips import BadDataError
from mmvlp.datasets.transforms import read_image_file
from mmvlp.registry import MODELS
from mmvlp.checkpoint import (add_load_arguments, allow_partial_loading,
                              check_checkpoint_file, exit_on_load_error,
                              load_model_weights)

__all__ = ['list_images', 'load_image', 'main']


def _resize_crop(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Shorter side resized (bicubic) and centre-cropped to ``size``."""
    height, width = image.shape[:2]
    scale = max(size[0] / height, size[1] / width)
    image = mmcv.imresize(
        image, (max(size[1], round(width * scale)),
                max(size[0], round(height * scale))),
        interpolation='bicubic')
    top = (image.shape[0] - size[0]) // 2
    left = (image.shape[1] - size[1]) // 2
    return image[top:top + size[0], left:left + size[1]]


def read_rgb(path: str, size: Tuple[int, int]) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8, resized and centre-cropped to ``size``.

    Raises:
        BadDataError: The file cannot be used (its reason, e.g.
            ``missing_file``, ``truncated_image``, ``not_an_image``).
    """
    image = read_image_file(path)
    if image.ndim != 3:
        raise BadDataError('not_an_image', f'{path} (not a colour image)')
    return _resize_crop(image[..., ::-1], size)


def load_image(path: str, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """:func:`read_rgb`, or None when the file cannot be read as an
    image."""
    try:
        return read_rgb(path, size)
    except BadDataError:
        return None


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer type that holds every token id."""
    for dtype in (np.int16, np.int32, np.int64):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f'vocab_size {vocab_size} does not fit int64.')


def tokenize_shard(model, paths: List[str], batch_size: int, device: str,
                   advance=lambda n: None) -> ShardResult:
    """Token ids of one shard (``ids``, ``paths``) and the skipped paths
    with their reasons."""
    size = tuple(model.encoder.img_size)
    ids, kept, skipped = [], [], []
    for start in range(0, len(paths), batch_size):
        images = []
        chunk = paths[start:start + batch_size]
        for path in chunk:
            try:
                image = read_rgb(path, size)
            except BadDataError as error:
                skipped.append((path, error.reason))
                continue
            images.append(torch.from_numpy(image.copy()).permute(2, 0, 1))
            kept.append(path)
        if images:
            batch = torch.stack(images).float().to(device)
            ids.append(model.encode(batch).cpu().numpy())
        advance(len(chunk))
    dtype = ids_dtype(model.vocab_size)
    if ids:
        array = np.concatenate(ids).astype(dtype)
    else:
        array = np.zeros((0, *model.encoder.patch_grid), dtype)
    return ShardResult(dict(ids=array, paths=np.array(kept, dtype=str)),
                       skipped)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='tokenizer config (with `model`)')
    parser.add_argument('checkpoint', help='tokenizer checkpoint')
    parser.add_argument('--data', required=True,
                        help='image folder, path list or jsonl')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--shard-size', type=int, default=1024)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--compile', action='store_true',
                        help='compile the encoder with its weights frozen in '
                        '(10-30 s once, then faster; see BaseVisualTokenizer.'
                        'compile_encode)')
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    with exit_on_load_error(args.debug):
        return _tokenize(args)


def _tokenize(args: argparse.Namespace) -> int:
    check_checkpoint_file(args.checkpoint)
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmvlp'))
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'encode') or not hasattr(model, 'vocab_size'):
        raise SystemExit(f'error: {type(model).__name__} is not a visual '
                         'tokenizer (it has no encode/vocab_size).')
    # The encoder and codebook must load (docs/reliability.md); OUT is
    # only created afterwards.
    with allow_partial_loading(args.allow_partial):
        load_model_weights(model, args.checkpoint, purpose='encode')
    model.to(args.device).eval()
    if args.compile:
        model.compile_encode()

    paths = list_images(args.data)
    if not paths:
        print(f'error: no images found in {args.data}', file=sys.stderr)
        return 1
    summary = run_in_shards(
        paths, args.out, args.shard_size,
        lambda shard, advance: tokenize_shard(
            model, shard, args.batch_size, args.device, advance),
        count_key='paths')
    skipped_all = [path for path, _ in summary['skipped']]
    meta = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        vocab_size=int(model.vocab_size),
        # BSQ ids: how the bits are packed (big-endian, as the official
        # BSQ-ViT / QLIP code); None for codebook (VQ) ids.
        id_bit_order=getattr(getattr(model, 'quantizer', None), 'bit_order',
                             None),
        grid=list(model.encoder.patch_grid),
        images=summary['written'],
        shards=summary['shards'],
        skipped=len(skipped_all),
        skipped_by_reason=summary['skipped_by_reason'],
        skipped_paths=skipped_all)
    with open(osp.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    shards = range(summary['shards'])
    print(f'\ntokenized {meta["images"]} images into {len(shards)} shard(s) '
          f'in {args.out}; skipped {len(skipped_all)} unreadable file(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
