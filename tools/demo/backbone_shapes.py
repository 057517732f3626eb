"""Build a BEiT-3 backbone from a config and print its output shapes.

Usage: python tools/demo/backbone_shapes.py CONFIG [--cfg-options k=v ...]

Runs the three kinds of BEiT-3 inputs (images, padded texts, image-text pairs)
plus the dense ``forward`` of the config, and prints each shape.
"""
import argparse
import time

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import mmvlp  # noqa: F401  (compatibility fixes)
from mmvlp.registry import MODELS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file with a BEiT3 `model`')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.arch=base')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmvlp'))
    demo = cfg.get('demo', dict(batch_size=2, text_len=16))
    torch.manual_seed(0)
    start = time.perf_counter()
    model = MODELS.build(cfg.model).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f'built {type(model).__name__}(arch={cfg.model.arch!r}, '
          f'layout={model.layout!r}) with {params:.1f}M parameters in '
          f'{time.perf_counter() - start:.1f}s')

    batch, length = demo['batch_size'], demo['text_len']
    images = torch.randn(batch, 3, *model.img_size)
    text = torch.randint(4, model.vocab_size, (batch, length))
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[-1, length // 2:] = True  # the last text is half padding
    with torch.no_grad():
        rows = [
            ('image', model.forward_sequence(images=images)),
            ('text', model.forward_sequence(
                text_ids=text, text_padding_mask=padding)),
            ('image+text', model.forward_sequence(
                images=images, text_ids=text, text_padding_mask=padding)),
        ]
        dense = model(images)
    print(f'inputs: images {tuple(images.shape)}, text ids '
          f'{tuple(text.shape)} ({int(padding.sum())} padding tokens)')
    for name, out in rows:
        print(f'forward_sequence[{name:>10}] -> {tuple(out.shape)}')
    for index, out in zip(model.out_indices, dense):
        print(f'forward(images) layer {index} ({model.out_type}) -> '
              f'{tuple(out.shape)}')


if __name__ == '__main__':
    main()
