"""Train a model from an mmvlp config with mmengine's Runner (DDP) or, for
configs with a ``strategy`` (DeepSpeed, FSDP), its FlexibleRunner.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--accumulate N] [--cfg-options key=value ...]
        [--launcher none|pytorch|slurm] [--allow-partial] [--debug]

Several processes: tools/dist_train.sh (torchrun) or tools/slurm_train.sh;
both also run on CPU-only hosts (gloo, one thread per process). The
effective batch and learning rate are printed at the start.

``load_from`` / ``--resume`` checkpoints are checked against the model
(docs/reliability.md): one that leaves the backbone at its initial value,
or (resume) any tensor, stops the run with one message; a fresh task head is
reported in one line.
"""
import argparse
import logging
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.logging import print_log

import mmvlp  # noqa: F401  (compatibility fixes, registries)
from mmvlp.checkpoint import (add_load_arguments, check_checkpoint_file,
                              checked_runner_loading, exit_on_load_error)
from mmvlp.runtime import (build_runner, check_config, exit_after_launch,
                           finish_launch, report_batch, set_accumulation,
                           setup_launch)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no path is given')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (AmpOptimWrapper: '
                        'bf16 on CPUs with AMX/AVX512-BF16, else fp32; the '
                        "config's dtype, fp16 by default, on GPUs; "
                        'DeepSpeed configs set bf16/fp16 in the strategy)')
    parser.add_argument(
        '--accumulate', type=int, default=1, metavar='N',
        help='accumulate gradients over N iterations per optimizer step; '
        'iteration-based schedules and hook intervals are multiplied by N '
        'so they stay in optimizer steps')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. '
                        'train_cfg.max_iters=100')
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


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to the config."""
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp and cfg.get('strategy') is None:
        # A loss scaler for fp16 only (mmvlp's AmpOptimWrapper).
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
    elif args.amp:
        print_log('--amp is ignored for configs with a strategy: DeepSpeed '
                  'takes bf16/fp16 from the strategy, FSDP the optimizer '
                  "wrapper's AmpOptimWrapper.", logger='current',
                  level=logging.WARNING)
    set_accumulation(cfg, args.accumulate)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None) -> bool:
    args = parse_args(argv)
    with exit_on_load_error(args.debug):
        return _train(args)


def _train(args: argparse.Namespace) -> bool:
    cfg = merge_args(Config.fromfile(args.config), args)
    if cfg.get('load_from'):
        check_checkpoint_file(cfg.load_from,
                              allow_dirs=cfg.get('strategy') is not None)
    if not args.no_config_check:
        check_config(cfg)  # before anything is built (docs/reliability.md)
    # Strategies (DeepSpeed, FSDP); CPU-only hosts: gloo group, CPU
    # wrappers, fp32 (see mmvlp/runtime/launch.py).
    setup_launch(cfg)
    report_batch(cfg)
    runner = build_runner(cfg)
    purpose = 'resume' if cfg.get('resume') else 'train'
    with checked_runner_loading(runner, purpose, args.allow_partial):
        runner.train()
    return finish_launch()


if __name__ == '__main__':
    if main():  # a distributed rank: leave without finalisation
        exit_after_launch()
