"""The main demo with several training seeds, and the spread of its claims
(`make demo-seeds`): the numbers behind the thresholds of `make test-demo`.

Usage:
    python tools/demo/demo_seeds.py [--seeds 0 1 2]
        [--work-dir work_dirs/demo_seeds] [--summarize-only]

Runs ``tools/demo/pretrain_demo.py --seed S --work-dir <work-dir>/seed_S``
for each seed in turn (a seed whose ``metrics.json`` exists is not run
again), then writes ``<work-dir>/summary.json`` and prints, per claim, the
model's accuracy, the strongest baseline (by name and value), the gain over
it (mean, min, max over the seeds) and the threshold of
``tests/test_demo_metrics.py``. Every seed uses the same data and the same
evaluation masks; only the training randomness (initialisation, data order,
masks, drop path) differs.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
from typing import Dict, List

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
from eval_demo_pretrain import CLAIMS, THRESHOLDS  # noqa: E402


def summarize(metrics: Dict[int, dict]) -> Dict[str, dict]:
    """Mean and range over seeds of each claim's model accuracy, strongest
    baseline and gain."""
    summary = {}
    for claim in CLAIMS:
        rows = [m['claims'][claim] for m in metrics.values()]
        stats = {}
        for key in ('model_acc', 'baseline_acc', 'gain'):
            values = [row[key] for row in rows]
            stats[key] = dict(mean=sum(values) / len(values),
                              min=min(values), max=max(values))
        stats['strongest_baselines'] = sorted(
            {row['strongest_baseline'] for row in rows})
        stats['threshold'] = THRESHOLDS.get(claim)  # None: reported only
        summary[claim] = stats
    return summary


def table(summary: Dict[str, dict], seeds: List[int]) -> str:
    """The summary as a Markdown table."""
    lines = [
        f'| claim | model (mean of {len(seeds)} seeds) | strongest baseline '
        '| baseline (mean) | gain: mean [min, max] | threshold |',
        '|---|---|---|---|---|---|']
    for claim, s in summary.items():
        gain = s['gain']
        lines.append(
            f'| {claim} | {s["model_acc"]["mean"]:.3f} | '
            f'{", ".join(s["strongest_baselines"])} | '
            f'{s["baseline_acc"]["mean"]:.3f} | {gain["mean"]:+.3f} '
            f'[{gain["min"]:+.3f}, {gain["max"]:+.3f}] | '
            + ('reported only' if s['threshold'] is None else
               f'{s["threshold"]:+.3f}') + ' |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/demo_seeds')
    parser.add_argument('--summarize-only', action='store_true',
                        help='only summarise the seeds already run')
    args = parser.parse_args(argv)
    metrics, timings = {}, {}
    for seed in args.seeds:
        work_dir = osp.join(args.work_dir, f'seed_{seed}')
        path = osp.join(REPO, work_dir, 'metrics.json')
        if not osp.isfile(path) and not args.summarize_only:
            print(f'\n==== seed {seed} ({work_dir})', flush=True)
            subprocess.run([sys.executable, 'tools/demo/pretrain_demo.py',
                            '--seed', str(seed), '--work-dir', work_dir],
                           cwd=REPO, check=True)
        if not osp.isfile(path):
            print(f'seed {seed}: no {path}, left out', flush=True)
            continue
        with open(path) as f:
            metrics[seed] = json.load(f)
        timing = osp.join(REPO, work_dir, 'timings.json')
        if osp.isfile(timing):
            with open(timing) as f:
                timings[seed] = json.load(f)
    if not metrics:
        print('no seed has metrics yet')
        return 1
    summary = summarize(metrics)
    out = osp.join(REPO, args.work_dir, 'summary.json')
    with open(out, 'w') as f:
        json.dump(dict(seeds=sorted(metrics), claims=summary,
                       per_seed={seed: m['claims'] for seed, m in
                                 metrics.items()},
                       timings=timings), f, indent=2)
    print('\n' + table(summary, sorted(metrics)))
    print(f'\nwritten to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
