"""Evaluate a checkpoint with the config's test loop and metrics.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm]
        [--allow-partial] [--debug]

A checkpoint that does not fit the model (nothing loads, a task head or the
backbone would stay at its initial value, another size) stops the run with
one message instead of a metric of random weights; a file that is not a
checkpoint, with one line (docs/reliability.md).

Several processes: tools/dist_test.sh (torchrun) or tools/slurm_test.sh;
both also run on CPU-only hosts (gloo, one thread per process).
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process

import mmvlp  # noqa: F401  (compatibility fixes, registries)
from mmvlp.checkpoint import (add_load_arguments, check_checkpoint_file,
                              checked_runner_loading, exit_on_load_error)
from mmvlp.runtime import (build_runner, check_config, exit_after_launch,
                           finish_launch, setup_launch)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where to save logs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--no-config-check', action='store_true',
                        help='skip mmvlp.runtime.check_config (unknown types, '
                        'BEiT-3 settings that contradict each other)')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None) -> bool:
    args = parse_args(argv)
    with exit_on_load_error(args.debug):
        return _test(args)


def _test(args: argparse.Namespace) -> bool:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    # Not a checkpoint (missing, empty, text, cut short): before anything
    # is built or written. (Strategies load checkpoint directories.)
    check_checkpoint_file(args.checkpoint,
                          allow_dirs=cfg.get('strategy') is not None)
    if not args.no_config_check:
        check_config(cfg)  # before anything is built (docs/reliability.md)
    # CPU-only hosts: gloo group, CPU DDP (see mmvlp/runtime/launch.py).
    setup_launch(cfg)
    runner = build_runner(cfg)
    with checked_runner_loading(runner, 'test', args.allow_partial):
        metrics = runner.test()
    if is_main_process():  # every rank has them; one prints (whole lines)
        for name, value in metrics.items():
            print(f'{name}: {value}', flush=True)
    return finish_launch()


if __name__ == '__main__':
    if main():  # a distributed rank: leave without finalisation
        exit_after_launch()
