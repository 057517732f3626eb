"""Convert VQ-KD tokenizer weights to an mmvlp ``VQKD`` checkpoint.

Usage:
    python tools/model_converters/vqkd_to_mmvlp.py SRC DST

SRC is an official BEiT v2 tokenizer checkpoint (unilm ``beit2/`` keys,
weights under ``model``) or an mmpretrain 1.2.0 ``VQKD`` state dict / BEiT v2
checkpoint (``target_generator.`` keys); the format is detected. DST holds
``state_dict`` and, in ``meta``, a matching ``VQKD`` config. The attention
head count is not stored in weights; 64-channel heads are assumed (true for
the released ViT-B tokenizers). A SRC that is not a VQ-KD checkpoint gives
one ``error:`` line naming what it is; DST is written only on success, and
atomically.
"""
import argparse
import os.path as osp
import sys

from mmvlp.models.converters import convert_vqkd, unwrap_checkpoint
from mmvlp.checkpoint import (CheckpointError, CheckpointFileError,
                              add_load_arguments, check_checkpoint_file,
                              exit_on_load_error, summarize_checkpoint)
from mmvlp.checkpoint.files import atomic_torch_save
from mmvlp.compat.torch_load import safe_torch_load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='unilm BEiT v2 or mmpretrain VQKD .pth')
    parser.add_argument('dst', help='output .pth')
    add_load_arguments(parser, partial=False)
    args = parser.parse_args(argv)
    try:
        with exit_on_load_error(args.debug):
            return _convert(args)
    except SystemExit as exit_:
        return exit_.code


def _convert(args: argparse.Namespace) -> int:
    check_checkpoint_file(args.src, 'source')
    raw = safe_torch_load(args.src, 'cpu')
    summary = summarize_checkpoint(raw, args.src)
    try:
        state_dict, info = convert_vqkd(unwrap_checkpoint(raw))
    except ValueError as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointFileError(
            f'{args.src}: {error}\n  The file holds {summary.describe()}. '
            f'Its use: {summary.use}.') from error
    atomic_torch_save(
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
