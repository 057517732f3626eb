"""Convert a released QLIP model (NVlabs/QLIP) to an mmvlp ``BSQViT``.

Usage:
    python tools/model_converters/qlip_to_mmvlp.py SRC DST
        [--config config.json] [--config-out qlip_cfg.py]

SRC is a QLIP model folder in the Hugging Face layout (``config.json`` and
``model.safetensors`` or ``pytorch_model.bin``, optionally
``preprocessor_config.json``), or a bare ``.safetensors`` / ``.bin`` /
``.pth`` state dict with ``--config``. DST holds ``state_dict`` and, in
``meta``, the matching ``BSQViT`` config, which is also printed (and
written as an mmengine config with ``--config-out``).
"""
import argparse
import os.path as osp
import pprint
import sys

import torch
from mmengine.utils import mkdir_or_exist

from mmvlp.models.converters.qlip import convert_qlip, read_qlip_checkpoint
from mmvlp.compat.torch_load import UnsafeCheckpointError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='QLIP model folder or weights file')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--config', help='config.json (when SRC is a file)')
    parser.add_argument('--config-out',
                        help='write the model config as an mmengine config')
    args = parser.parse_args(argv)
    try:
        hf_config, weights, (mean, std) = read_qlip_checkpoint(args.src,
                                                               args.config)
        state_dict, info = convert_qlip(weights, hf_config, mean, std)
    except (ValueError, FileNotFoundError, UnsafeCheckpointError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    mkdir_or_exist(osp.dirname(osp.abspath(args.dst)))
    torch.save(
        dict(state_dict=state_dict,
             meta=dict(converted_from='qlip', source=osp.basename(
                 osp.normpath(args.src)), model_cfg=info.model_cfg)),
        args.dst)
    text = 'model = ' + pprint.pformat(info.model_cfg, sort_dicts=False)
    print(text)
    if args.config_out:
        with open(args.config_out, 'w') as f:
            f.write(f'# Converted from {args.src} by '
                    'tools/model_converters/qlip_to_mmvlp.py\n'
                    "default_scope = 'mmvlp'\n" + text + '\n')
        print(f'config written to {args.config_out}')
    print(f'checked and dropped rotary tables: {len(info.checked_rope)}')
    if info.ignored:
        print(f'not converted (unused): {info.ignored}')
    print(f'saved {len(state_dict)} tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
