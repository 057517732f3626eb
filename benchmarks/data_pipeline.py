"""Throughput of the BEiT-3 pretraining data pipeline per worker, against
what one base training step consumes on the same machine; and mmvlp's
block-wise mask generator against mmpretrain's ``BEiTMaskGenerator``.

The pipelines are the three sources of
``configs/_base_/datasets/beit3_pretrain_sources.py`` as they stand
(images: load, colour jitter, flip, two-view crop, block-wise mask, pack;
texts: tokenize, 15% masking, pack; pairs: the image pipeline plus caption
tokenization and 50% masking), built through the registries, run in this
process with one torch/OpenCV thread as in a DataLoader worker. Nothing is
downloaded: the data are generated scenes of coloured shapes
(:func:`mmvlp.datasets.make_demo_dataset`) with pixel noise so that they
compress like photos, saved as 4:3 JPEGs, and a SentencePiece model trained
on their captions.

Training consumption: one step (forward + backward) of mmvlp's BEiT3
(``--step-arch``, base by default) on ``--step-batch-size`` samples; the
image pipeline is compared with an image-only step, the text and pair
pipelines with an image+text step (the slower and so the stricter one).

Usage::

    python benchmarks/data_pipeline.py
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

if __package__ in (None, ''):
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from benchmarks.common import (compare, finish, machine_info,  # noqa: E402
                               median, resolve_device, run_interleaved,
                               setup_threads)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SOURCES_CFG = osp.join(ROOT, 'configs/_base_/datasets/'
                       'beit3_pretrain_sources.py')
SOURCES = ('image', 'text', 'pair')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-dir', default='work_dirs/benchmarks/data',
                        help='where the generated data go (reused when '
                        'present with the same settings)')
    parser.add_argument('--num-images', type=int, default=64)
    parser.add_argument('--image-size', type=int, default=448,
                        help='width of the generated JPEGs (height 3/4 of '
                        'it)')
    parser.add_argument('--samples', type=int, default=48,
                        help='samples per source and round')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--masks', type=int, default=500,
                        help='masks per generator and round')
    parser.add_argument('--step-arch', default='base')
    parser.add_argument('--step-batch-size', type=int, default=4)
    parser.add_argument('--step-repeats', type=int, default=2,
                        help='measured training steps (the fastest counts)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads of the training step')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='work_dirs/benchmarks/'
                        'data_pipeline.json')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------
def prepare_data(data_dir: str, num_images: int, width: int,
                 seed: int) -> Dict[str, str]:
    """Generate JPEG scenes with captions, a text corpus and a
    SentencePiece model (once per setting)."""
    from PIL import Image

    from mmvlp.datasets import make_demo_dataset
    from mmvlp.text import train_sentencepiece
    settings = dict(num_images=num_images, width=width, seed=seed, version=1)
    meta_path = osp.join(data_dir, 'meta.json')
    paths = dict(root=data_dir, pairs='pairs.jsonl', images='jpg',
                 corpus=osp.join(data_dir, 'corpus.jsonl'),
                 spm=osp.join(data_dir, 'text_spm.model'))
    if osp.exists(meta_path):
        with open(meta_path) as f:
            if json.load(f) == settings:
                return paths
    height = width * 3 // 4
    make_demo_dataset(data_dir, num_train=num_images, num_val=0, size=width,
                      seed=seed)
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(data_dir, 'jpg'), exist_ok=True)
    pairs = []
    with open(osp.join(data_dir, 'captions_train.jsonl')) as f:
        records = [json.loads(line) for line in f]
    for index, record in enumerate(records):
        scene = np.asarray(Image.open(osp.join(data_dir, record['image'])))
        top = (width - height) // 2
        pixels = scene[top:top + height].astype(np.int16)
        pixels += rng.normal(0, 12, pixels.shape).astype(np.int16)
        name = f'jpg/{index:05d}.jpg'
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
            osp.join(data_dir, name), quality=90)
        pairs.append(dict(image=name, caption=record['caption']))
    with open(osp.join(data_dir, 'pairs.jsonl'), 'w') as f:
        f.writelines(json.dumps(p) + '\n' for p in pairs)
    with open(paths['corpus'], 'w') as f:
        f.writelines(json.dumps(dict(text=p['caption'])) + '\n'
                     for p in pairs)
    train_sentencepiece(paths['corpus'], paths['spm'][:-len('.model')],
                        vocab_size=200, field='text', model_type='bpe')
    with open(meta_path, 'w') as f:
        json.dump(settings, f)
    return paths


def build_datasets(paths: Dict[str, str]) -> dict:
    """The three pretraining sources of the base config, on our data."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmvlp.datasets  # noqa: F401  (registers the datasets/transforms)
    from mmvlp.registry import DATASETS
    init_default_scope('mmvlp')
    cfg = Config.fromfile(SOURCES_CFG).train_dataloader
    image = cfg.image.dataset
    image.update(data_root=paths['root'], data_prefix=paths['images'])
    text = cfg.text.dataset
    text.update(ann_file=paths['corpus'])
    text.tokenizer.model_file = paths['spm']
    pair = cfg.pair.dataset
    pair.update(data_root=paths['root'], ann_file=paths['pairs'])
    for transform in pair.pipeline:
        if transform['type'] == 'TokenizeText':
            transform['model_file'] = paths['spm']
    return {name: DATASETS.build(dataset) for name, dataset in
            (('image', image), ('text', text), ('pair', pair))}


def sample_fns(datasets: dict, samples: int) -> Dict[str, Callable]:
    """One round of ``samples`` samples of each source, cycling the data."""
    fns = {}
    for name, dataset in datasets.items():
        state = dict(index=0)

        def run(dataset=dataset, state=state):
            for _ in range(samples):
                sample = dataset[state['index'] % len(dataset)]
                state['index'] += 1
                if sample is None or 'inputs' not in sample:
                    raise RuntimeError('The pipeline dropped a sample.')

        fns[name] = run
    return fns


def mask_fns(masks: int) -> Dict[str, Callable]:
    """mmpretrain's and mmvlp's block-wise mask generators with BEiT-3's
    settings (14x14 patches, 40% = 78 patches, blocks >= 16, aspect 0.3)."""
    from mmpretrain.datasets.transforms import BEiTMaskGenerator

    from mmvlp.datasets.transforms.masking import BlockwiseMaskGenerator
    mmvlp_gen = BlockwiseMaskGenerator(input_size=14, mask_ratio=0.4,
                                       min_num_patches=16, min_aspect=0.3)
    official = BEiTMaskGenerator(input_size=14,
                                 num_masking_patches=mmvlp_gen.num_masked,
                                 min_num_patches=16, min_aspect=0.3)

    def loop(transform):
        def run():
            for _ in range(masks):
                transform({})
        return run

    return dict(mmpretrain=loop(official.transform),
                mmvlp=loop(mmvlp_gen.transform))


# ----------------------------------------------------------------------
# Training consumption
# ----------------------------------------------------------------------
def step_seconds(args: argparse.Namespace, threads: int) -> Dict[str, float]:
    """Fastest of ``--step-repeats`` training steps of mmvlp's BEiT3 per
    input kind, after one warm-up step."""
    from benchmarks.backbone import make_inputs, training_step
    from mmvlp.models import BEiT3
    torch.set_num_threads(threads)
    device = torch.device('cpu')
    model = BEiT3(arch=args.step_arch).train()
    size = model.img_size[0]
    inputs = make_inputs(
        argparse.Namespace(seed=args.seed, batch_size=args.step_batch_size,
                           img_size=size, text_len=64), device)
    out = {}
    for mode, text in (('image', None), ('image_text', inputs['text'])):
        padding = inputs['padding'] if text is not None else None

        def forward(text=text, padding=padding):
            return model.forward_sequence(images=inputs['images'],
                                          text_ids=text,
                                          text_padding_mask=padding)

        step = training_step(model, forward, device)
        step()
        times = []
        for _ in range(args.step_repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        out[mode] = min(times)
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    device = resolve_device('cpu')
    threads = setup_threads(args.threads)
    print(f'Pretraining data pipeline per worker (1 thread) vs a BEiT3 '
          f'{args.step_arch} training step ({threads} threads, batch '
          f'{args.step_batch_size})', flush=True)
    paths = prepare_data(args.data_dir, args.num_images, args.image_size,
                         args.seed)
    datasets = build_datasets(paths)
    np.random.seed(args.seed)

    # A DataLoader worker runs with one thread.
    import cv2
    cv2_threads = cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        print('pipelines:', flush=True)
        pipeline = run_interleaved(sample_fns(datasets, args.samples),
                                   args.repeats, 1, device)
        print('mask generators:', flush=True)
        masks = run_interleaved(mask_fns(args.masks), args.repeats, 1, device)
    finally:
        cv2.setNumThreads(cv2_threads)
    rates = {name: args.samples / median([s['wall_s'] for s in runs])
             for name, runs in pipeline.items()}
    mask_stats = compare(masks['mmpretrain'], masks['mmvlp'])
    mask_rates = {name: args.masks / median([s['wall_s'] for s in runs])
                  for name, runs in masks.items()}

    print('training steps:', flush=True)
    steps = step_seconds(args, threads)
    consumed = {mode: args.step_batch_size / seconds
                for mode, seconds in steps.items()}
    against = dict(image='image', text='image_text', pair='image_text')
    margins = {name: rates[name] / consumed[against[name]]
               for name in SOURCES}
    for name in SOURCES:
        print(f'  {name}: {rates[name]:.1f} samples/s per worker; a '
              f'{against[name]} step consumes '
              f'{consumed[against[name]]:.2f}/s -> {margins[name]:.1f}x',
              flush=True)
    print(f'  mask generator: mmvlp {mask_rates["mmvlp"]:.0f}/s, mmpretrain '
          f'{mask_rates["mmpretrain"]:.0f}/s, speed-up '
          f'{mask_stats["wall_s"]["speedup"]:.2f}x', flush=True)
    payload = dict(
        benchmark='data_pipeline', machine=machine_info(device),
        settings=dict(vars(args)), pipeline_samples=pipeline,
        samples_per_s=rates, step_seconds=steps,
        step_samples_per_s=consumed, margin=margins,
        mask_samples=masks, mask_comparison=mask_stats,
        masks_per_s=mask_rates)
    headline = {f'{name}_samples_per_s': rates[name] for name in SOURCES}
    headline.update({f'{name}_margin': margins[name] for name in SOURCES})
    headline['min_margin'] = min(margins.values())
    headline['mask_speedup'] = mask_stats['wall_s']['speedup']
    finish('data_pipeline', payload, args.out, headline)
    return payload


if __name__ == '__main__':
    main()
