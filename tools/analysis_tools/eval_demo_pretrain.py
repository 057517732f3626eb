"""Evaluate the demo's pretrained BEiT-3 on held-out images and captions.

Usage:
    python tools/analysis_tools/eval_demo_pretrain.py CONFIG CHECKPOINT
        [--data data/demo_pretrain] [--out work_dirs/demo/metrics.json]
        [--check] [--seed 0]

Writes ``metrics.json`` and prints a table:

* ``mim_acc`` / ``mim_majority_baseline``: visual-token accuracy on masked
  patches of images alone, and the share of the most frequent true token
  among them; ``mim_fg_*``: the same on masked patches that show part of a
  shape (any pixel away from the background colour);
* ``mlm_acc`` / ``mlm_majority_baseline``: masked caption tokens (15%) of
  captions alone;
* ``pair_mlm_acc_matched`` / ``_shuffled``: half of the words that describe
  the shapes (size, colour, shape, position) masked in a caption, predicted
  with its image and with the images shuffled across the batch;
* ``pair_mim_fg_acc_matched`` / ``_shuffled``: masked foreground patches of
  pair images (40%, block-wise), predicted with the true caption and with
  shuffled captions.

With binary-code targets (a BSQ/QLIP tokenizer and a
``FactorizedTokenHead``) the visual accuracies are exact-token accuracies
(every bit right) and each gets a ``*_bit_acc`` companion: the share of
correct bits; ``mim_bit_majority_baseline`` predicts every bit's most
frequent value, and ``mim_bit_acc_per_dim`` lists the bit accuracy of each
code dimension (most significant first).

``--check`` exits 1 unless ``mim_acc >= 3 x baseline``, ``mlm_acc >= 2 x
baseline``, caption filling gains >= 0.15 from the true image and
foreground MIM gains >= 0.10 from the true caption.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from PIL import Image

import mmvlp  # noqa: F401  (compatibility fixes, registries)
from mmvlp.datasets.transforms import BlockwiseMaskGenerator, TextMasking
from mmvlp.registry import MODELS
from mmvlp.text import TextTokenizer

FOREGROUND_THRESHOLD = 30  # max channel distance from the background colour
THRESHOLDS = (
    ('mim_acc', '>=', 3.0, 'mim_majority_baseline'),
    ('mlm_acc', '>=', 2.0, 'mlm_majority_baseline'),
    ('pair_mlm_acc_matched', '-', 0.15, 'pair_mlm_acc_shuffled'),
    ('pair_mim_fg_acc_matched', '-', 0.10, 'pair_mim_fg_acc_shuffled'),
)


class Tally:
    """Correct predictions and true targets of one metric; with
    ``num_bits``, also the correct bits of binary-code ids (big-endian)."""

    def __init__(self, num_bits: int = 0) -> None:
        self.correct, self.targets = 0, []
        self.num_bits = num_bits
        self.bit_correct = np.zeros(num_bits)
        self.bit_ones = np.zeros(num_bits)

    def add(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += int((predictions == targets).sum())
        self.targets += targets.tolist()
        if self.num_bits:
            shifts = torch.arange(self.num_bits - 1, -1, -1)
            pred = (predictions.long()[:, None] >> shifts) & 1
            true = (targets.long()[:, None] >> shifts) & 1
            self.bit_correct += (pred == true).sum(0).numpy()
            self.bit_ones += true.sum(0).numpy()

    def accuracy(self) -> float:
        return self.correct / max(1, len(self.targets))

    def majority(self) -> float:
        if not self.targets:
            return 0.
        _, counts = np.unique(self.targets, return_counts=True)
        return float(counts.max() / len(self.targets))

    def bit_accuracy_per_dim(self) -> np.ndarray:
        return self.bit_correct / max(1, len(self.targets))

    def bit_majority(self) -> float:
        share = self.bit_ones / max(1, len(self.targets))
        return float(np.maximum(share, 1 - share).mean())


def visual_predictions(head, hidden: torch.Tensor) -> torch.Tensor:
    """Predicted visual token ids of ``(N, C)`` hidden states, for a linear
    head (argmax) or a factorised one (each bit / group's argmax)."""
    if hasattr(head, 'predict'):
        return head.predict(hidden)
    return head(hidden).argmax(-1)


def load_split(data: str, split: str) -> List[dict]:
    """Records of ``captions_<split>.jsonl`` with their RGB images."""
    records = []
    with open(osp.join(data, f'captions_{split}.jsonl')) as f:
        for line in f:
            record = json.loads(line)
            record['pixels'] = np.asarray(
                Image.open(osp.join(data, record['image'])).convert('RGB'))
            records.append(record)
    return records


def foreground_patches(pixels: np.ndarray, background: List[int],
                       patch: int) -> np.ndarray:
    """``(h, w)`` bool: patches with a pixel away from the background."""
    distance = np.abs(pixels.astype(int) - np.asarray(background)).max(-1)
    height, width = distance.shape
    blocks = distance.reshape(height // patch, patch, width // patch, patch)
    return (blocks > FOREGROUND_THRESHOLD).any(axis=(1, 3))


@torch.no_grad()
def evaluate(model, tokenizer: TextTokenizer, records: List[dict],
             mean: torch.Tensor, std: torch.Tensor, patch: int,
             seed: int = 0, batch_size: int = 100) -> Dict[str, float]:
    """All demo metrics on ``records``."""
    rng = np.random.default_rng(seed)
    vision_masker = BlockwiseMaskGenerator(
        input_size=model.backbone.patch_grid, mask_ratio=0.4,
        min_num_patches=4, seed=seed)
    text_masker = TextMasking(mask_id=model.backbone.text_mask_token_id,
                              vocab_size=model.backbone.vocab_size,
                              mask_ratio=0.15, seed=seed)
    num_bits = getattr(model.mim_head, 'num_bits', 0)
    tallies = {name: Tally(0 if 'mlm' in name else num_bits) for name in (
        'mim', 'mim_fg', 'mlm', 'pair_mlm_matched', 'pair_mlm_shuffled',
        'pair_mim_fg_matched', 'pair_mim_fg_shuffled')}
    backbone, skipped = model.backbone, 0
    mask_id = backbone.text_mask_token_id
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        raw = torch.from_numpy(np.stack([r['pixels'] for r in chunk])).permute(
            0, 3, 1, 2).float()
        images = (raw - mean) / std
        targets = model.tokenizer.encode(raw).flatten(1)
        fg = torch.from_numpy(np.stack([
            foreground_patches(r['pixels'], r['background'], patch)
            for r in chunk])).flatten(1)
        vision_mask = torch.from_numpy(np.stack([
            vision_masker({})['vision_mask'] for _ in chunk])).flatten(1)
        split = 1 + vision_mask.shape[1]

        # Images alone.
        hidden = backbone.forward_sequence(images=images,
                                           vision_mask=vision_mask)[:, 1:]
        predicted = visual_predictions(model.mim_head, hidden[vision_mask])
        tallies['mim'].add(predicted, targets[vision_mask])
        keep = fg[vision_mask]
        tallies['mim_fg'].add(predicted[keep], targets[vision_mask][keep])

        # Captions alone.
        text_ids, padding = tokenizer([r['caption'] for r in chunk],
                                      pad_to=tokenizer.max_length)
        masked = [text_masker({'text_ids': row.numpy()}) for row in text_ids]
        masked_ids = torch.from_numpy(
            np.stack([m['masked_text_ids'] for m in masked]))
        mlm_mask = torch.from_numpy(np.stack([m['text_mlm_mask']
                                              for m in masked]))
        hidden = backbone.forward_sequence(text_ids=masked_ids,
                                           text_padding_mask=padding)
        tallies['mlm'].add(model.mlm_head(hidden[mlm_mask]).argmax(-1),
                           text_ids[mlm_mask])

        # Pairs: fill in content words, with the true or a shuffled image.
        content_mask = torch.zeros_like(text_ids, dtype=torch.bool)
        for row, record in enumerate(chunk):
            spans = tokenizer.word_positions(record['caption'],
                                             record['content_words'])
            if spans is None:
                skipped += 1
                continue
            for index in rng.permutation(len(spans))[:max(1,
                                                         len(spans) // 2)]:
                content_mask[row, spans[index]] = True
        pair_ids = text_ids.masked_fill(content_mask, mask_id)
        for name, pair_images in (('matched', images),
                                  ('shuffled', images.roll(1, 0))):
            output, _ = backbone.encode(images=pair_images, text_ids=pair_ids,
                                        text_padding_mask=padding)
            text_hidden = output.hidden_states[:, split:]
            tallies[f'pair_mlm_{name}'].add(
                model.mlm_head(text_hidden[content_mask]).argmax(-1),
                text_ids[content_mask])

        # Pairs: masked foreground patches, with the true or a shuffled
        # caption.
        fg_mask = vision_mask & fg
        for name, (ids, pad) in (('matched', (text_ids, padding)),
                                 ('shuffled', (text_ids.roll(1, 0),
                                               padding.roll(1, 0)))):
            output, _ = backbone.encode(images=images,
                                        vision_mask=vision_mask, text_ids=ids,
                                        text_padding_mask=pad)
            patch_hidden = output.hidden_states[:, 1:split]
            tallies[f'pair_mim_fg_{name}'].add(
                visual_predictions(model.mim_head, patch_hidden[fg_mask]),
                targets[fg_mask])
    metrics = dict(
        mim_acc=tallies['mim'].accuracy(),
        mim_majority_baseline=tallies['mim'].majority(),
        mim_fg_acc=tallies['mim_fg'].accuracy(),
        mim_fg_majority_baseline=tallies['mim_fg'].majority(),
        mlm_acc=tallies['mlm'].accuracy(),
        mlm_majority_baseline=tallies['mlm'].majority(),
        pair_mlm_acc_matched=tallies['pair_mlm_matched'].accuracy(),
        pair_mlm_acc_shuffled=tallies['pair_mlm_shuffled'].accuracy(),
        pair_mim_fg_acc_matched=tallies['pair_mim_fg_matched'].accuracy(),
        pair_mim_fg_acc_shuffled=tallies['pair_mim_fg_shuffled'].accuracy(),
        num_images=len(records),
        skipped_captions=skipped)
    if num_bits:
        for name in ('mim', 'mim_fg', 'pair_mim_fg_matched',
                     'pair_mim_fg_shuffled'):
            key = (f'{name}_bit_acc' if 'pair' not in name else
                   name.replace('_fg_', '_fg_bit_acc_'))
            metrics[key] = float(tallies[name].bit_accuracy_per_dim().mean())
        metrics['mim_bit_majority_baseline'] = tallies['mim'].bit_majority()
        metrics['mim_bit_acc_per_dim'] = [
            round(float(v), 4)
            for v in tallies['mim'].bit_accuracy_per_dim()]
    return metrics


def check(metrics: Dict[str, float]) -> List[str]:
    """The demo's thresholds that do not hold."""
    failures = []
    for left, op, value, right in THRESHOLDS:
        if op == '>=' and not metrics[left] >= value * metrics[right]:
            failures.append(f'{left} {metrics[left]:.3f} < {value} x {right} '
                            f'{metrics[right]:.3f}')
        if op == '-' and not metrics[left] - metrics[right] >= value:
            failures.append(f'{left} - {right} = '
                            f'{metrics[left] - metrics[right]:.3f} < {value}')
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--data', default='data/demo_pretrain')
    parser.add_argument('--out', default='work_dirs/demo/metrics.json')
    parser.add_argument('--check', action='store_true',
                        help='exit 1 when a threshold does not hold')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmvlp'))
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model).eval()
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True,
                    logger='silent')
    preprocessor = model.data_preprocessor
    tokenizer = TextTokenizer(cfg.text_model, max_length=cfg.max_text_len)
    metrics = evaluate(model, tokenizer, load_split(args.data, 'val'),
                       preprocessor.mean, preprocessor.std,
                       model.backbone.patch_size, args.seed)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(metrics, f, indent=2)
    print(f'\n{"metric":<28}{"value":>8}')
    for key, value in metrics.items():
        if isinstance(value, list):
            value = ' '.join(f'{v:.2f}' for v in value)
            print(f'{key:<28}{value}')
            continue
        print(f'{key:<32}{value:>8.3f}' if isinstance(value, float) else
              f'{key:<32}{value:>8}')
    print(f'written to {args.out}')
    failures = check(metrics)
    for failure in failures:
        print(f'threshold not met: {failure}')
    if args.check and failures:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
