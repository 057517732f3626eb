"""Convert VQ-KD tokenizer weights to an mmvlp ``VQKD`` checkpoint.

Usage:
    python tools/model_converters/vqkd_to_mmvlp.py SRC DST

SRC is an official BEiT v2 tokenizer checkpoint (unilm ``beit2/`` keys,
weights under ``model``) or an mmpretrain 1.2.0 ``VQKD`` state dict / BEiT v2
checkpoint (``target_generator.`` keys); the format is detected. DST holds
``state_dict`` and, in ``meta``, a matching ``VQKD`` config. The attention
head count is not stored in weights; 64-channel heads are assumed (true for
the released ViT-B tokenizers).
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.utils import mkdir_or_exist

from mmvlp.models.converters import convert_vqkd, unwrap_checkpoint
from mmvlp.utils import UnsafeCheckpointError, safe_torch_load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='unilm BEiT v2 or mmpretrain VQKD .pth')
    parser.add_argument('dst', help='output .pth')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        print(f'error: {args.src} does not exist', file=sys.stderr)
        return 1
    try:
        weights = unwrap_checkpoint(safe_torch_load(args.src, 'cpu'))
        state_dict, info = convert_vqkd(weights)
    except (ValueError, UnsafeCheckpointError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    mkdir_or_exist(osp.dirname(osp.abspath(args.dst)))
    torch.save(
        dict(state_dict=state_dict,
             meta=dict(converted_from=f'{info.source}-vqkd',
                       source=osp.basename(args.src),
                       model_cfg=info.model_cfg)), args.dst)
    print(f'format: {info.source}')
    print(f'VQKD config: {info.model_cfg}')
    if info.ignored:
        print(f'not converted (unused by the tokenizer): {info.ignored}')
    print(f'saved {len(state_dict)} tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
