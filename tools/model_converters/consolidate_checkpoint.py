"""Consolidate a DeepSpeed (ZeRO-1/2/3), FSDP or DDP checkpoint into one
mmengine ``.pth`` with fp32 weights, for ``init_cfg=dict(type='Pretrained',
checkpoint=OUT, prefix='backbone.')`` and ``load_checkpoint``.

Usage:
    # DeepSpeed checkpoint directory, FSDP full-state-dict or DDP file:
    python tools/model_converters/consolidate_checkpoint.py \
        work_dirs/RUN/iter_1000000.pth checkpoints/beit3_base_pretrained.pth
    # FSDP sharded checkpoint (ITER.pth/rank{i}.pth): the training config,
    # as many processes as wrote the shards:
    tools/dist_run.sh 8 model_converters/consolidate_checkpoint.py \
        work_dirs/RUN/iter_1000000.pth OUT.pth --config CONFIG

Every file is loaded with ``weights_only=True`` (DeepSpeed's own loaders use
``weights_only=False``); see mmvlp/checkpoint/consolidation.py.
"""
import argparse
import os

from mmengine.config import Config, DictAction

import mmvlp  # noqa: F401  (compatibility fixes, registries)
from mmvlp.checkpoint import (add_load_arguments, check_checkpoint_file,
                              exit_on_load_error)
from mmvlp.checkpoint.consolidation import (checkpoint_kind,
                                            consolidate_deepspeed,
                                            consolidate_file,
                                            consolidate_fsdp_sharded,
                                            save_consolidated)
from mmvlp.runtime import exit_after_launch, finish_launch, setup_launch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Consolidate a DeepSpeed / FSDP / DDP checkpoint into '
        'one mmengine .pth with fp32 weights')
    parser.add_argument('checkpoint', help='DeepSpeed ITER.pth directory, '
                        'FSDP ITER.pth (file or rank{i}.pth directory) or '
                        'a Runner checkpoint')
    parser.add_argument('out', help='output .pth')
    parser.add_argument('--config', help='training config (needed for FSDP '
                        'sharded checkpoints)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'],
                        default=None, help='job launcher (default: pytorch '
                        'under torchrun, else none)')
    add_load_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> bool:
    args = parse_args(argv)
    with exit_on_load_error(args.debug):
        return _consolidate(args)


def _consolidate(args: argparse.Namespace) -> bool:
    # Not a checkpoint: one line, and OUT is not written (it is written
    # atomically once the weights are gathered).
    check_checkpoint_file(args.checkpoint, allow_dirs=True)
    kind = checkpoint_kind(args.checkpoint)
    if kind == 'deepspeed':
        state, meta = consolidate_deepspeed(args.checkpoint)
    elif kind == 'file':
        state, meta = consolidate_file(args.checkpoint)
    else:
        if args.config is None:
            raise SystemExit(
                f'{args.checkpoint} is an FSDP sharded checkpoint: pass the '
                'training config (--config) and run with as many processes '
                'as wrote it: tools/dist_run.sh N '
                'model_converters/consolidate_checkpoint.py CKPT OUT '
                '--config CONFIG')
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        cfg.launcher = args.launcher or (
            'pytorch' if 'LOCAL_RANK' in os.environ else 'none')
        setup_launch(cfg)
        state, meta = consolidate_fsdp_sharded(cfg, args.checkpoint)
    if state is not None:
        save_consolidated(state, args.out, args.checkpoint, meta)
    return finish_launch()


if __name__ == '__main__':
    if main():  # a distributed rank: leave without finalisation
        exit_after_launch()
