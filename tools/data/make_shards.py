"""Write webdataset .tar shards from an image-caption list or an image folder.

Usage:
    python tools/data/make_shards.py --ann-file LIST --out DIR
        [--data-root ROOT] [--ann-format jsonl|tsv|coco] [--prefix pairs]
        [--maxcount 10000] [--maxsize 1e9]
    python tools/data/make_shards.py --image-dir DIR --out DIR
        [--prefix images] [--maxcount 10000] [--maxsize 1e9]

LIST is read as ``ImageTextDataset`` reads it (jsonl / tsv / COCO captions;
image paths relative to ``--data-root``, by default the folder of LIST); an
image folder is searched recursively. Each record is ``KEY.jpg|png|webp``
(the file's bytes; other formats re-encoded as PNG), ``KEY.txt`` (the
caption, pairs only) and ``KEY.json`` (``image``: the source path, plus the
list's other fields). Every image is decoded once on the way: missing,
empty, truncated and non-image files and empty captions are skipped and
counted by reason. The last lines give the shard pattern and the sample
count for ``WebShardDataset(urls=..., num_samples=...)``.
"""
import argparse
import json
import os
import os.path as osp
import sys
from collections import Counter
from typing import Iterator, List, Optional, Tuple

import cv2
import webdataset as wds
from mmengine.utils import scandir
from tqdm import tqdm

from mmvlp.datasets import BadDataError, load_image_text_list
from mmvlp.datasets.transforms import decode_image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp', '.bmp', '.tif',
                    '.tiff', '.ppm')


def image_record(path: str) -> Tuple[str, bytes]:
    """``(extension, bytes)`` of a checked image file.

    Raises:
        BadDataError: The file is missing, unreadable, empty or no image.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise BadDataError('missing_file', path) from None
    except OSError as error:
        raise BadDataError('unreadable_file', f'{path} ({error})') from None
    img = decode_image(data, detail=path)
    if data.startswith(b'\xff\xd8\xff'):
        return 'jpg', data
    if data.startswith(b'\x89PNG'):
        return 'png', data
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'webp', data
    return 'png', cv2.imencode('.png', img)[1].tobytes()


def pair_samples(ann_file: str, data_root: str,
                 ann_format: Optional[str] = None
                 ) -> Tuple[List[dict], Counter]:
    """Samples of a caption list and the records skipped while reading it."""
    samples, skips = load_image_text_list(ann_file, ann_format, data_root)
    for sample in samples:
        sample['image'] = osp.relpath(sample['img_path'], data_root)
    return samples, Counter(skips)


def folder_samples(image_dir: str) -> List[dict]:
    """One sample per image file of a folder (recursive, sorted)."""
    names = sorted(scandir(image_dir, suffix=IMAGE_EXTENSIONS,
                           recursive=True, case_sensitive=False))
    return [dict(img_path=osp.join(image_dir, name), image=name)
            for name in names]


def write_shards(samples: List[dict], pattern: str, maxcount: int,
                 maxsize: float, skips: Counter) -> Tuple[int, List[str]]:
    """Write ``samples`` (``img_path``, optional ``caption``, other fields
    go to the json) into shards named ``pattern % index``; unusable ones are
    counted in ``skips``. Returns the samples written and the shard files."""
    shards: List[str] = []

    def records() -> Iterator[dict]:
        index = 0
        for sample in tqdm(samples, desc='shards', unit='sample'):
            try:
                ext, data = image_record(sample['img_path'])
            except BadDataError as error:
                skips[error.reason] += 1
                continue
            meta = {k: v for k, v in sample.items()
                    if k not in ('img_path', 'caption')}
            record = {'__key__': f'{index:09d}', ext: data,
                      'json': json.dumps(meta).encode('utf-8')}
            if 'caption' in sample:
                record['txt'] = sample['caption'].encode('utf-8')
            index += 1
            yield record

    written = 0
    with wds.ShardWriter(pattern, maxcount=maxcount, maxsize=maxsize,
                         verbose=0, post=shards.append) as sink:
        for record in records():
            sink.write(record)
            written += 1
    return written, shards


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--ann-file', help='jsonl / tsv / COCO caption list')
    source.add_argument('--image-dir', help='folder of images (no captions)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--data-root', help='root of the image paths of '
                        '--ann-file (default: its folder)')
    parser.add_argument('--ann-format', choices=('jsonl', 'tsv', 'coco'))
    parser.add_argument('--prefix', help='shard name prefix (default: '
                        'pairs or images)')
    parser.add_argument('--maxcount', type=int, default=10000,
                        help='samples per shard')
    parser.add_argument('--maxsize', type=float, default=1e9,
                        help='bytes per shard')
    args = parser.parse_args(argv)

    if args.ann_file:
        data_root = args.data_root or osp.dirname(osp.abspath(args.ann_file))
        samples, skips = pair_samples(args.ann_file, data_root,
                                      args.ann_format)
    else:
        if not osp.isdir(args.image_dir):
            parser.error(f'--image-dir {args.image_dir} is not a folder.')
        samples, skips = folder_samples(args.image_dir), Counter()
    prefix = args.prefix or ('pairs' if args.ann_file else 'images')
    os.makedirs(args.out, exist_ok=True)
    pattern = osp.join(args.out, f'{prefix}-%06d.tar')
    written, shards = write_shards(samples, pattern, args.maxcount,
                                   args.maxsize, skips)
    skipped = sum(skips.values())
    if not written:
        for shard in shards:
            os.remove(shard)
        print(f'wrote nothing: all {skipped} samples were skipped '
              f'({dict(skips)}).', file=sys.stderr)
        raise SystemExit(1)
    urls = osp.join(args.out, f'{prefix}-{{000000..{len(shards) - 1:06d}}}'
                    '.tar')
    print(f'wrote {written} samples in {len(shards)} shards: {urls}')
    print(f'skipped {skipped}' + (': ' + ', '.join(
        f'{k} {v}' for k, v in sorted(skips.items())) if skipped else ''))
    print(f"WebShardDataset(urls='{urls}', num_samples={written}"
          + (', with_caption=False' if args.image_dir else '') + ')')
    return dict(written=written, shards=shards, urls=urls,
                skipped=dict(skips))


if __name__ == '__main__':
    main()
