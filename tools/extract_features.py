"""Extract BEiT-3 features of images, captions or image-text pairs to shards.

Usage:
    python tools/extract_features.py CONFIG CHECKPOINT --data DATA --out OUT
        [--kind auto|image|text|pair] [--text-field caption]
        [--features image_cls image_embed ...] [--batch-size 32]
        [--shard-size 1024] [--format npz|npy] [--dtype float32|float16]
        [--device cpu] [--map MAP.png [--map-feature F] [--map-method pca|tsne]
        [--label-field FIELD | --labels ANN.txt]]

CONFIG is any BEiT-3 config with a test pipeline (path or config name; e.g.
a retrieval config) and CHECKPOINT any BEiT-3 file mmvlp loads (pretraining,
fine-tuning, converted or official; see ``mmvlp.apis.FeatureExtractor``).
DATA is a folder of images (searched recursively), a text file with one
image path per line, or a jsonl file with an ``image`` and/or a text field
(``caption`` or ``text``) per line; ``--kind auto`` reads images from
folders and path lists and texts from jsonl files with a text field
(``pair``: the image and the text of each jsonl line).

OUT receives ``shard_00000.npz`` ... (or folders ``shard_00000/`` of
``.npy`` files with ``--format npy``): one array per feature (``(n, ...)``),
``ids`` (image paths, the jsonl ``id`` field or ``<file>:<line>``) in the
same order, and the ids and reasons of what was skipped; and ``meta.json``
with the counts. Shards are written atomically; running the command again
keeps the finished shards, so an interrupted run resumes where it stopped.
Unreadable images and empty captions are skipped and counted by reason.
``--map`` also saves a 2-D map (PCA or t-SNE) of one feature, coloured by a
jsonl field (``--label-field``) or by the labels of an mmpretrain
annotation file (``--labels``: ``path label`` per line).
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Dict, List, Optional

import numpy as np

from mmvlp.apis import FeatureExtractor
from mmvlp.apis.embedding_map import MAP_METHODS, plot_embedding_map
from mmvlp.datasets.offline_shards import (SHARD_FORMATS, ShardResult,
                                           list_records, run_in_shards)
from mmvlp.datasets.skips import BadDataError
from mmvlp.models.multimodal.features import FEATURE_KEYS

#: Features written by default, per kind (patch maps and tokens on request).
DEFAULT_FEATURES = dict(
    image=('image_cls', 'image_mean', 'image_embed'),
    text=('text_cls', 'text_mean', 'text_embed'),
    pair=('image_cls', 'image_embed', 'text_cls', 'text_embed',
          'fused_image_cls', 'fused_text_cls', 'fused_mean'))
EMBEDS = ('image_embed', 'text_embed')


def available_features(kind: str) -> List[str]:
    """Features a kind of input can give (``image_tokens`` too for
    images)."""
    if kind == 'image':
        return list(FEATURE_KEYS['image']) + ['image_tokens']
    if kind == 'text':
        return list(FEATURE_KEYS['text'])
    return [k for keys in FEATURE_KEYS.values() for k in keys] + [
        'image_tokens']


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='BEiT-3 config (path or name)')
    parser.add_argument('checkpoint', help='any BEiT-3 checkpoint')
    parser.add_argument('--data', required=True,
                        help='image folder, path list or jsonl')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--kind', default='auto',
                        choices=('auto', 'image', 'text', 'pair'))
    parser.add_argument('--text-field', default=None,
                        help='jsonl text field (default: caption or text)')
    parser.add_argument('--features', nargs='+', default=None,
                        help='features to write (default: see '
                        'DEFAULT_FEATURES; retrieval embeddings only when '
                        'the checkpoint has retrieval heads)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--shard-size', type=int, default=1024)
    parser.add_argument('--format', default='npz', choices=SHARD_FORMATS)
    parser.add_argument('--dtype', default='float32',
                        choices=('float32', 'float16'))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--map', default=None,
                        help='save a 2-D map of the embeddings here (.png)')
    parser.add_argument('--map-feature', default=None,
                        help='feature of the map (default: the first '
                        'written)')
    parser.add_argument('--map-method', default='pca', choices=MAP_METHODS)
    parser.add_argument('--label-field', default=None,
                        help='jsonl field that colours the map')
    parser.add_argument('--labels', default=None,
                        help='mmpretrain annotation file ("path label" per '
                        'line) that colours the map')
    return parser.parse_args(argv)


def choose_features(kind: str, wanted: Optional[List[str]],
                    has_heads: bool) -> List[str]:
    """The features to write; an error names what cannot be given."""
    available = available_features(kind)
    if wanted is None:
        return [f for f in DEFAULT_FEATURES[kind]
                if has_heads or f not in EMBEDS]
    unknown = [f for f in wanted if f not in available]
    if unknown:
        raise SystemExit(f'error: {unknown} cannot be extracted from '
                         f'{kind} inputs; choose from {available}.')
    no_heads = [f for f in wanted if f in EMBEDS and not has_heads]
    if no_heads:
        raise SystemExit(f'error: {no_heads} need retrieval heads, which '
                         'the checkpoint does not have.')
    return list(wanted)


def extract_shard(extractor: FeatureExtractor, records, kind: str,
                  features: List[str], batch_size: int, dtype: str,
                  advance) -> ShardResult:
    """Features of one shard's records; bad images and empty captions are
    skipped with their reasons."""
    from mmvlp.apis.encoder_models import read_image
    outputs: Dict[str, list] = {f: [] for f in features}
    ids, skipped = [], []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        images, texts, kept = [], [], []
        for record in batch:
            if record.skip_reason:
                skipped.append((record.id, record.skip_reason))
                continue
            if kind in ('image', 'pair'):
                try:
                    images.append(read_image(record.image))
                except BadDataError as error:
                    skipped.append((record.id, error.reason))
                    continue
            if kind in ('text', 'pair'):
                texts.append(record.text)
            kept.append(record.id)
        if kept:
            feats = extractor.extract_batch(
                images or None, texts or None,
                return_tokens='image_tokens' in features)
            for name in features:
                outputs[name].append(
                    feats[name].float().cpu().numpy().astype(dtype))
            ids.extend(kept)
        advance(len(batch))
    arrays = {name: (np.concatenate(parts) if parts else np.zeros(
        (0, *extractor.feature_shape(name)), dtype))
        for name, parts in outputs.items()}
    arrays['ids'] = np.array(ids, dtype=str)
    return ShardResult(arrays, skipped)


def read_shards(out: str, fmt: str, keys: List[str]) -> Dict[str, np.ndarray]:
    """The arrays ``keys`` of every shard of ``out``, concatenated."""
    parts: Dict[str, list] = {k: [] for k in keys}
    pattern = 'shard_[0-9]*.npz' if fmt == 'npz' else 'shard_[0-9]*'
    for path in sorted(glob.glob(osp.join(out, pattern))):
        if path.endswith('.partial') or (fmt == 'npy' and path.endswith(
                '.npz')):
            continue
        if fmt == 'npz':
            with np.load(path) as shard:
                for key in keys:
                    parts[key].append(shard[key])
        else:
            for key in keys:
                parts[key].append(np.load(osp.join(path, f'{key}.npy')))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in
            parts.items()}


def annotation_labels(path: str) -> Dict[str, str]:
    """``path -> label`` of an mmpretrain annotation file (paths also
    resolved against the file's folder)."""
    root = osp.dirname(osp.abspath(path))
    labels = {}
    with open(path) as f:
        for line in f:
            parts = line.rsplit(maxsplit=1)
            if len(parts) == 2:
                labels[parts[0]] = parts[1]
                labels[osp.normpath(osp.join(root, parts[0]))] = parts[1]
    return labels


def save_map(args, records, features: List[str]) -> str:
    """The 2-D map of one feature of everything written, coloured by the
    labels that are given."""
    feature = args.map_feature or features[0]
    if feature not in features:
        raise SystemExit(f'error: --map-feature {feature} was not '
                         f'extracted (written: {features}).')
    arrays = read_shards(args.out, args.format, [feature, 'ids'])
    labels = None
    if args.label_field:
        by_id = {r.id: r.extra.get(args.label_field) for r in records}
        labels = [str(by_id.get(i)) for i in arrays['ids']]
    elif args.labels:
        by_path = annotation_labels(args.labels)
        labels = [str(by_path.get(i, by_path.get(osp.normpath(i))))
                  for i in arrays['ids']]
    plot_embedding_map(arrays[feature], args.map, labels, args.map_method,
                       title=f'{args.map_method.upper()} of {feature}')
    return feature


def main(argv=None) -> int:
    args = parse_args(argv)
    records = list_records(args.data, args.kind, args.text_field)
    if not records:
        print(f'error: no inputs found in {args.data}', file=sys.stderr)
        return 1
    kind = args.kind
    if kind == 'auto':
        kind = 'text' if records[0].text is not None or (
            records[0].image is None) else 'image'
    extractor = FeatureExtractor(args.config, args.checkpoint,
                                 device=args.device)
    features = choose_features(kind, args.features,
                               extractor.has_retrieval_heads)
    summary = run_in_shards(
        records, args.out, args.shard_size,
        lambda shard, advance: extract_shard(
            extractor, shard, kind, features, args.batch_size, args.dtype,
            advance),
        count_key='ids', fmt=args.format)
    meta = dict(
        config=args.config, checkpoint=args.checkpoint, data=args.data,
        kind=kind, features=features, format=args.format, dtype=args.dtype,
        has_retrieval_heads=extractor.has_retrieval_heads,
        written=summary['written'], shards=summary['shards'],
        resumed_shards=summary['resumed'],
        skipped=len(summary['skipped']),
        skipped_by_reason=summary['skipped_by_reason'],
        skipped_ids=[i for i, _ in summary['skipped']])
    if args.map:
        meta['map'] = dict(file=args.map, feature=save_map(args, records,
                                                           features),
                           method=args.map_method)
    with open(osp.join(args.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'wrote {meta["features"]} of {meta["written"]} {kind} input(s) '
          f'into {meta["shards"]} shard(s) in {args.out} '
          f'({summary["resumed"]} kept from an earlier run); skipped '
          f'{meta["skipped"]} {summary["skipped_by_reason"] or ""}'.rstrip())
    return 0


if __name__ == '__main__':
    sys.exit(main())
