"""Convert an official BEiT-3 file (pretrained or fine-tuned) into an mmvlp
checkpoint of the matching model.

Usage:
    python tools/model_converters/beit3_unilm_to_mmvlp.py SRC DST \
        [--task auto|backbone|imagenet|vqav2|nlvr2|retrieval|captioning] \
        [--config CONFIG [--cfg-options k=v ...]] [--num-heads N] \
        [--layout decoupled|shared] [--prefix backbone.]

The task is read from the file's head keys (``--task`` overrides it): a
fine-tuned file becomes the weights of the whole task model (``backbone.*``
and the head under mmvlp names: ``BEiT3VQA``, ``BEiT3NLVR2``,
``BEiT3Retrieval``, ``BEiT3Captioner``, ``BEiT3ImageClassifier``); a
pretrained file becomes a ``BEiT3`` backbone (bare keys, or ``--prefix``).
With ``--config`` the weights are fitted to that config's model (position
tables resized, text parts or the final norm dropped where the model has
none) and checked against it, so the file loads with ``strict=True``. The
converter prints the model config that fits the file. Official files load
without conversion too (``load_from``, ``tools/test.py CONFIG FILE``,
``init_cfg``); see docs/model_zoo.md.

DST holds ``state_dict`` and, in ``meta``, the task and that config. It
is written only when the conversion succeeds, and atomically; a SRC that is
not an official BEiT-3 file (not a checkpoint, an mmvlp or VQ-KD file, ...)
and, with ``--config``, weights that leave the model's backbone empty give
one ``error:`` line naming what SRC is and the fix (docs/reliability.md).
"""
import argparse
import os.path as osp
import pprint
import sys

import torch
from mmengine.config import Config, DictAction

from mmvlp.models.converters import (OFFICIAL_TASKS, map_official_beit3,
                                     unwrap_checkpoint)
from mmvlp.checkpoint import (CheckpointError, CheckpointFileError,
                              CheckpointFitError, add_load_arguments,
                              allow_partial_loading, check_checkpoint_file,
                              compare_state_dict, exit_on_load_error,
                              summarize_checkpoint)
from mmvlp.checkpoint.files import atomic_torch_save
from mmvlp.compat.torch_load import safe_torch_load


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official BEiT-3 checkpoint to mmvlp.')
    parser.add_argument('src', help='official .pth (weights under "model" or '
                        '"module" or bare; keys with or without "beit3.")')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--task', default='auto',
                        choices=('auto', ) + tuple(OFFICIAL_TASKS),
                        help='target model (default: read from the heads)')
    parser.add_argument('--config', help='fit the weights to this config\'s '
                        'model (e.g. the 384 VQA config for a 480 file)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override entries of --config')
    parser.add_argument('--num-heads', type=int, help='attention heads for '
                        'the printed config (not stored in weights; default '
                        'width / 64)')
    parser.add_argument(
        '--layout',
        choices=('decoupled', 'shared'),
        default=None,
        help='expected attention layout (detected when omitted)')
    parser.add_argument(
        '--prefix',
        default='',
        help='with --task backbone: prefix for the keys, e.g. "backbone." '
        'to load the file into a whole classifier/detector with load_from')
    add_load_arguments(parser)
    return parser.parse_args(argv)


def build_meta_model(config: str, options: dict = None):
    """The model of a config, built on the meta device (no memory, no
    weights loaded)."""
    from mmengine.registry import init_default_scope

    import mmvlp.models  # noqa: F401  (registers the models)
    from mmvlp.registry import MODELS
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    init_default_scope(cfg.get('default_scope', 'mmvlp'))
    with torch.device('meta'):
        return MODELS.build(cfg.model)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with exit_on_load_error(args.debug):
            return _convert(args)
    except SystemExit as exit_:
        return exit_.code


def read_official(src: str) -> dict:
    """The weights of an official BEiT-3 file; other files raise
    :class:`~mmvlp.checkpoint.CheckpointFileError` naming what they are."""
    check_checkpoint_file(src, 'source')
    raw = safe_torch_load(src, 'cpu')
    summary = summarize_checkpoint(raw, src)
    if summary.kind != 'official-beit3':
        raise CheckpointFileError(
            f'{src} is not an official BEiT-3 checkpoint (those hold e.g. '
            'beit3.vision_embed.proj.weight, beit3.encoder.embed_positions.'
            'A.weight and beit3.encoder.layers.{i}.* under "model"): it '
            f'holds {summary.describe()}. Its use: {summary.use}.')
    return unwrap_checkpoint(raw)


def _convert(args: argparse.Namespace) -> int:
    weights = read_official(args.src)
    model = None
    if args.config:
        model = build_meta_model(args.config, args.cfg_options)
    task = None if args.task == 'auto' else args.task
    try:
        mapping = map_official_beit3(weights, task=task, model=model,
                                     num_heads=args.num_heads)
    except ValueError as error:  # several heads, another size, ...
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointFitError(str(error)) from error
    if args.layout and args.layout != mapping.backbone.layout:
        raise CheckpointFileError(
            f'The checkpoint has {mapping.backbone.layout} attention but '
            f'layout={args.layout!r} was requested; use --layout '
            f'{mapping.backbone.layout} (released BEiT-3 checkpoints are '
            'decoupled).')
    if model is not None:  # what would load into the config's model
        with allow_partial_loading(args.allow_partial):
            report = compare_state_dict(model, mapping.state_dict, 'train',
                                        source=args.src)
            report.hints = mapping.problems()
            report.check()
    prefix = args.prefix if mapping.task == 'backbone' else ''
    state_dict = {prefix + k: v for k, v in mapping.state_dict.items()}
    model_cfg = mapping.model_cfg()
    meta = dict(converted_from='unilm-beit3', source=osp.basename(args.src),
                task=mapping.task, file_task=mapping.file_task,
                model_cfg=model_cfg, notes=mapping.notes)
    atomic_torch_save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(mapping.summary())
    for problem in mapping.problems():
        print(f'warning: {problem}')
    if not args.config:
        print('model config that fits the file (attention heads: '
              f'{"given" if args.num_heads else "assumed width / 64"}):')
        print(pprint.pformat(model_cfg, sort_dicts=False))
    print(f'saved {len(state_dict)} tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
