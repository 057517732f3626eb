"""Convert an official unilm BEiT-3 checkpoint into an mmvlp checkpoint.

Usage:
    python tools/model_converters/beit3_unilm_to_mmvlp.py SRC DST \
        [--layout decoupled|shared] [--prefix backbone.]

The output is an mmengine checkpoint: ``state_dict`` holds the ``BEiT3``
backbone weights (loadable with ``mmengine.runner.load_checkpoint`` or
``init_cfg=dict(type='Pretrained', checkpoint=DST)``), ``task_heads`` the
official task-head tensors, and ``meta`` a matching backbone config.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.utils import mkdir_or_exist

from mmvlp.models.converters import convert_unilm_beit3, unwrap_checkpoint
from mmvlp.utils import UnsafeCheckpointError, safe_torch_load


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official BEiT-3 checkpoint to mmvlp.')
    parser.add_argument('src', help='official .pth (weights under "model" or '
                        '"module", keys prefixed "beit3.")')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--layout',
        choices=('decoupled', 'shared'),
        default=None,
        help='expected attention layout (detected when omitted)')
    parser.add_argument(
        '--prefix',
        default='',
        help='prefix for the backbone keys, e.g. "backbone." to load the file '
        'into a whole classifier/detector with load_from')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.src):
        print(f'error: {args.src} does not exist', file=sys.stderr)
        return 1
    try:
        weights = unwrap_checkpoint(safe_torch_load(args.src, 'cpu'))
        state_dict, report = convert_unilm_beit3(weights, layout=args.layout)
    except (ValueError, UnsafeCheckpointError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    state_dict = {args.prefix + k: v for k, v in state_dict.items()}
    meta = dict(
        converted_from='unilm-beit3',
        source=osp.basename(args.src),
        backbone_cfg=report.backbone_cfg())
    mkdir_or_exist(osp.dirname(osp.abspath(args.dst)))
    torch.save(
        dict(state_dict=state_dict, task_heads=report.task_heads, meta=meta),
        args.dst)
    print(report.summary())
    print(f'backbone config: {report.backbone_cfg()}')
    print(f'saved {len(state_dict)} tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
