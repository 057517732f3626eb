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
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import ProgressBar, scandir

import mmvlp  # noqa: F401  (compatibility fixes, registries)
from mmvlp.registry import MODELS

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.tif', '.webp')


def list_images(data: str) -> List[str]:
    """Image paths of a folder, a path list or a jsonl file, in order."""
    if osp.isdir(data):
        return sorted(
            osp.join(data, p) for p in scandir(
                data, suffix=IMAGE_EXTENSIONS, recursive=True,
                case_sensitive=False))
    if not osp.isfile(data):
        raise FileNotFoundError(f'--data {data} is neither a folder nor a '
                                'file.')
    root = osp.dirname(osp.abspath(data))
    paths = []
    with open(data) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if data.endswith('.jsonl'):
                try:
                    line = json.loads(line)['image']
                except (ValueError, KeyError) as error:
                    raise ValueError(f'{data}:{number}: expected a json '
                                     f'object with "image" ({error}).')
            paths.append(line if osp.isabs(line) else osp.join(root, line))
    return paths


def load_image(path: str, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """RGB ``(H, W, 3)`` uint8, shorter side resized and centre-cropped to
    ``size``; None when the file cannot be read as an image."""
    try:
        image = mmcv.imread(path, channel_order='rgb')
    except Exception:  # noqa: BLE001 -- any decoding failure skips the file
        return None
    if image is None or image.ndim != 3:
        return None
    height, width = image.shape[:2]
    scale = max(size[0] / height, size[1] / width)
    image = mmcv.imresize(
        image, (max(size[1], round(width * scale)),
                max(size[0], round(height * scale))),
        interpolation='bicubic')
    top = (image.shape[0] - size[0]) // 2
    left = (image.shape[1] - size[1]) // 2
    return image[top:top + size[0], left:left + size[1]]


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer type that holds every token id."""
    for dtype in (np.int16, np.int32, np.int64):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f'vocab_size {vocab_size} does not fit int64.')


def tokenize_shard(model, paths: List[str], batch_size: int,
                   device: str) -> Tuple[np.ndarray, List[str], List[str]]:
    """Token ids of one shard; returns (ids, kept paths, skipped paths)."""
    size = tuple(model.encoder.img_size)
    ids, kept, skipped = [], [], []
    for start in range(0, len(paths), batch_size):
        images = []
        for path in paths[start:start + batch_size]:
            image = load_image(path, size)
            if image is None:
                skipped.append(path)
                continue
            images.append(torch.from_numpy(image).permute(2, 0, 1))
            kept.append(path)
        if images:
            batch = torch.stack(images).float().to(device)
            ids.append(model.encode(batch).cpu().numpy())
    dtype = ids_dtype(model.vocab_size)
    if ids:
        array = np.concatenate(ids).astype(dtype)
    else:
        array = np.zeros((0, *model.encoder.patch_grid), dtype)
    return array, kept, skipped


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
    args = parser.parse_args(argv)

    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmvlp'))
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'encode') or not hasattr(model, 'vocab_size'):
        raise SystemExit(f'error: {type(model).__name__} is not a visual '
                         'tokenizer (it has no encode/vocab_size).')
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True,
                    logger='silent')
    model.to(args.device).eval()
    if args.compile:
        model.compile_encode()

    paths = list_images(args.data)
    if not paths:
        print(f'error: no images found in {args.data}', file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    shards = [paths[i:i + args.shard_size]
              for i in range(0, len(paths), args.shard_size)]
    skipped_all = []
    progress = ProgressBar(len(paths))
    for index, shard in enumerate(shards):
        target = osp.join(args.out, f'shard_{index:05d}.npz')
        if osp.isfile(target):  # finished in an earlier run
            with np.load(target) as done:
                skipped_all.extend(done['skipped'].tolist())
            for _ in shard:
                progress.update()
            continue
        ids, kept, skipped = tokenize_shard(model, shard, args.batch_size,
                                            args.device)
        partial = target + '.partial.npz'
        np.savez(partial, ids=ids, paths=np.array(kept),
                 skipped=np.array(skipped, dtype=str))
        os.replace(partial, target)
        skipped_all.extend(skipped)
        for _ in shard:
            progress.update()
    meta = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        vocab_size=int(model.vocab_size),
        # BSQ ids: how the bits are packed (big-endian, as the official
        # BSQ-ViT / QLIP code); None for codebook (VQ) ids.
        id_bit_order=getattr(getattr(model, 'quantizer', None), 'bit_order',
                             None),
        grid=list(model.encoder.patch_grid),
        images=len(paths) - len(skipped_all),
        shards=len(shards),
        skipped=len(skipped_all),
        skipped_paths=skipped_all)
    with open(osp.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'\ntokenized {meta["images"]} images into {len(shards)} shard(s) '
          f'in {args.out}; skipped {len(skipped_all)} unreadable file(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
