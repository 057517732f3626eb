"""Side by side: the demo pretraining with two visual targets.

Usage:
    python tools/analysis_tools/compare_demo_targets.py VQKD_METRICS \
        BSQ_METRICS [--out comparison.json]

Reads two ``metrics.json`` of ``eval_demo_pretrain.py`` (``make demo``:
VQ-KD colour codes; ``make demo-bsq-targets``: text-aligned 18-bit BSQ
tokens) and prints the MIM accuracies (exact token and, for binary codes,
per bit) with their baselines, the MLM accuracy, and the cross-modal gaps:
caption filling (true image minus shuffled image) and foreground MIM (true
caption minus shuffled caption).
"""
import argparse
import json
import sys

ROWS = (
    ('mim_acc', 'MIM exact-token acc (images)'),
    ('mim_majority_baseline', '  majority-token baseline'),
    ('mim_bit_acc', 'MIM bit acc (images)'),
    ('mim_bit_majority_baseline', '  per-bit majority baseline'),
    ('mim_fg_acc', 'MIM exact acc, foreground'),
    ('mim_fg_bit_acc', 'MIM bit acc, foreground'),
    ('mlm_acc', 'MLM acc (captions)'),
    ('pair_mlm_acc_matched', 'caption fill, true image'),
    ('pair_mlm_acc_shuffled', 'caption fill, shuffled image'),
    ('caption_fill_gap', '  caption-fill gap'),
    ('pair_mim_fg_acc_matched', 'fg MIM exact, true caption'),
    ('pair_mim_fg_acc_shuffled', 'fg MIM exact, shuffled caption'),
    ('fg_fill_gap', '  foreground-fill gap (exact)'),
    ('pair_mim_fg_bit_acc_matched', 'fg MIM bit, true caption'),
    ('pair_mim_fg_bit_acc_shuffled', 'fg MIM bit, shuffled caption'),
    ('fg_fill_bit_gap', '  foreground-fill gap (bits)'),
)


def with_gaps(metrics: dict) -> dict:
    """``metrics`` plus the two cross-modal gaps (and the bit gap)."""
    out = dict(metrics)
    out['caption_fill_gap'] = (metrics['pair_mlm_acc_matched'] -
                               metrics['pair_mlm_acc_shuffled'])
    out['fg_fill_gap'] = (metrics['pair_mim_fg_acc_matched'] -
                          metrics['pair_mim_fg_acc_shuffled'])
    if 'pair_mim_fg_bit_acc_matched' in metrics:
        out['fg_fill_bit_gap'] = (metrics['pair_mim_fg_bit_acc_matched'] -
                                  metrics['pair_mim_fg_bit_acc_shuffled'])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('vqkd', help='metrics.json of the VQ-KD run')
    parser.add_argument('bsq', help='metrics.json of the BSQ-target run')
    parser.add_argument('--out', help='write both, with gaps, as json')
    args = parser.parse_args(argv)
    runs = {}
    for name, path in (('vqkd', args.vqkd), ('bsq', args.bsq)):
        with open(path) as f:
            runs[name] = with_gaps(json.load(f))
    print(f'{"metric":<34}{"VQ-KD":>9}{"BSQ":>9}')
    for key, label in ROWS:
        cells = []
        for name in ('vqkd', 'bsq'):
            value = runs[name].get(key)
            cells.append(f'{value:>9.3f}' if isinstance(value, float) else
                         f'{"-":>9}')
        if any(cell.strip() != '-' for cell in cells):
            print(f'{label:<34}{"".join(cells)}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(runs, f, indent=2)
        print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
