"""Summarize benchmark runs: throughput, peak memory and the loss curve.

Usage:
    python tools/analysis_tools/summarize_benchmark.py WORK_DIR [WORK_DIR ...]
        --gpus N [--skip 50] [--curve 10 50 100 200 300]

Reads each run's last ``vis_data/scalars.json`` (what mmengine logs every
``logger.interval`` iterations) and its config (the file mmengine dumps
into the work dir) and prints one Markdown row per run:

* samples/s: ``N x samples per process and iteration / median time per
  iteration`` over the logged iterations after ``--skip`` (warm-up);
* peak memory: the largest ``memory`` mmengine logged (``torch.cuda.
  max_memory_allocated`` on rank 0, MiB; absent without CUDA);
* the loss at the iterations of ``--curve`` (the nearest logged one).
"""
import argparse
import glob
import json
import os.path as osp
import statistics
from typing import List, Optional, Sequence

from mmengine.config import Config


def _latest(pattern: str) -> Optional[str]:
    found = sorted(glob.glob(pattern))
    return found[-1] if found else None


def load_run(work_dir: str) -> dict:
    """The logged scalars and the per-process batch of one run."""
    scalars = _latest(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    if scalars is None:
        raise FileNotFoundError(
            f'{work_dir} has no */vis_data/scalars.json: is it the work dir '
            'of a finished run?')
    with open(scalars) as file:
        records = [json.loads(line) for line in file if line.strip()]
    records = [r for r in records if 'loss' in r and 'iter' in r]
    config = _latest(osp.join(work_dir, '*.py'))
    if config is None:
        raise FileNotFoundError(f'{work_dir} holds no dumped config (*.py).')
    loader = Config.fromfile(config).train_dataloader
    if 'batch_size' in loader:
        per_process = loader['batch_size']
    else:
        per_process = sum(part['batch_size'] for part in loader.values()
                          if isinstance(part, dict))
    return dict(name=osp.basename(osp.normpath(work_dir)), records=records,
                per_process=per_process)


def summarize(run: dict, gpus: int, skip: int = 50,
              curve: Sequence[int] = (10, 50, 100, 200, 300)) -> dict:
    """Throughput, peak memory and loss curve of :func:`load_run`'s run."""
    records = run['records']
    if not records:
        raise ValueError(f'{run["name"]}: no logged training iterations.')
    timed = [r['time'] for r in records if r['iter'] > skip] or \
        [r['time'] for r in records]
    seconds = statistics.median(timed)
    memory = [r['memory'] for r in records if 'memory' in r]
    losses = {}
    for target in curve:
        nearest = min(records, key=lambda r: abs(r['iter'] - target))
        losses[nearest['iter']] = nearest['loss']
    return dict(name=run['name'], gpus=gpus, seconds_per_iter=seconds,
                samples_per_second=gpus * run['per_process'] / seconds,
                peak_memory_gib=max(memory) / 1024 if memory else None,
                loss=losses)


def format_rows(rows: List[dict]) -> str:
    lines = ['| run | GPUs | s/iter | samples/s | peak memory (GiB, rank 0) '
             '| loss at iteration |', '|---|---|---|---|---|---|']
    for row in rows:
        memory = (f'{row["peak_memory_gib"]:.1f}'
                  if row['peak_memory_gib'] is not None else 'n/a (no CUDA)')
        curve = ', '.join(f'{k}: {v:.3f}' for k, v in row['loss'].items())
        lines.append(f'| {row["name"]} | {row["gpus"]} | '
                     f'{row["seconds_per_iter"]:.3f} | '
                     f'{row["samples_per_second"]:.0f} | {memory} | '
                     f'{curve} |')
    return '\n'.join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Summarize benchmark runs')
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--gpus', type=int, required=True,
                        help='processes the runs used')
    parser.add_argument('--skip', type=int, default=50,
                        help='warm-up iterations left out of the timing')
    parser.add_argument('--curve', type=int, nargs='+',
                        default=[10, 50, 100, 200, 300])
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rows = [summarize(load_run(d), args.gpus, args.skip, args.curve)
            for d in args.work_dirs]
    print(format_rows(rows))


if __name__ == '__main__':
    main()
