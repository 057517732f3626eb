"""Loading pretrained weights into a ``BEiT3`` backbone.

``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` on a
``BEiT3`` goes through :func:`load_pretrained_beit3`, which accepts

- checkpoints of mmvlp pretraining (``BEiT3Pretrain``: ``state_dict`` with
  ``backbone.*`` beside ``tokenizer.*``, ``mim_head.*``, ``mlm_head.*``),
- converted official checkpoints (``tools/model_converters/
  beit3_unilm_to_mmvlp.py``, with or without ``--prefix backbone.``) and
  official ones directly (``beit3.*`` keys under ``model``/``module``,
  converted on the fly),
- DeepSpeed and FSDP checkpoints: mmengine's ``DeepSpeedStrategy`` with
  ``save_optimizer=False`` and ``FSDPStrategy`` (full state dict) write an
  mmengine file (``state_dict``); with the optimizer, ``DeepSpeedStrategy``
  writes a *directory* whose ``mp_rank_00_model_states.pt`` holds the
  weights under ``module``; ``zero_to_fp32.py`` writes a plain state dict.
  Wrapper names (``module.``, ``_fsdp_wrapped_module.``,
  ``_checkpoint_wrapped_module.``, ``_orig_mod.``) are removed.

The pure functions here (:func:`extract_state_dict`,
:func:`select_backbone_keys`, :func:`is_text_only_key`) are what the loader is
made of and are tested on synthesized dicts.
"""
import ast
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from mmvlp.checkpoint.official_beit3 import is_official_beit3
from mmvlp.checkpoint.state_dicts import extract_state_dict
from .beit3_keys import TEXT_ONLY_DESCRIPTION, is_text_only_key

__all__ = [
    'TEXT_ONLY_DESCRIPTION', 'is_text_only_key', 'drop_text_only_keys',
    'make_vision_only', 'extract_state_dict', 'select_backbone_keys',
    'saved_patch_grid', 'load_pretrained_beit3'
]

#: Where DeepSpeed keeps the weights in a checkpoint directory.
DEEPSPEED_MODEL_FILE = 'mp_rank_00_model_states.pt'


def drop_text_only_keys(state_dict: dict, prefix: str = '') -> int:
    """Remove text-only entries under ``prefix`` from ``state_dict`` in place.

    Logs one line with the count when something was dropped.

    Args:
        state_dict (dict): Weights being loaded.
        prefix (str): The backbone's prefix in ``state_dict``.

    Returns:
        int: How many tensors were dropped.
    """
    dropped = [k for k in state_dict
               if k.startswith(prefix) and is_text_only_key(k[len(prefix):])]
    for key in dropped:
        del state_dict[key]
    if dropped:
        print_log(
            f'BEiT3 (vision_only=True): dropped {len(dropped)} text-only '
            f'tensors of the checkpoint ({TEXT_ONLY_DESCRIPTION}); vision '
            'tasks do not use them.',
            logger='current')
    return len(dropped)


def make_vision_only(model: nn.Module) -> None:
    """Remove the text parts of a built ``BEiT3`` in place.

    The text table and positions and every text / vision-language expert go;
    the mask token is frozen (vision tasks never mask patches, and
    DistributedDataParallel rejects parameters that get no gradient).

    Args:
        model (BEiT3): The backbone.
    """
    from ..layers import MultiwayExperts
    for module in model.modules():
        if isinstance(module, MultiwayExperts):
            for name in ('text', 'vl'):
                if hasattr(module, name):
                    delattr(module, name)
    model.text_embed = None
    model.register_parameter('pos_embed_text', None)
    model.mask_token.requires_grad_(False)


def _looks_like_backbone(state: Dict[str, torch.Tensor]) -> bool:
    return 'patch_embed.proj.weight' in state and any(
        k.startswith('layers.') for k in state)


def select_backbone_keys(
        state: Dict[str, torch.Tensor],
        prefix: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], str]:
    """The backbone's weights in ``state``, with names relative to it.

    Tried in order: keys under ``prefix`` (``'backbone.'`` when None);
    official BEiT-3 keys (converted with :func:`~mmvlp.models.converters.
    unilm_beit3_tasks.map_official_beit3`, task heads left out); keys that
    already are a bare backbone (the converter's ``--task backbone``
    output).

    Args:
        state (dict): A checkpoint's parameters (see
            :func:`extract_state_dict`).
        prefix (str, optional): The backbone's prefix in the checkpoint,
            e.g. ``'backbone.'``.

    Returns:
        tuple: The backbone weights and a phrase saying where they came from.

    Raises:
        ValueError: No backbone weights found; the message lists what the
            checkpoint holds.
    """
    wanted = prefix or 'backbone.'
    wanted = wanted if wanted.endswith('.') else wanted + '.'
    sub = {k[len(wanted):]: v for k, v in state.items()
           if k.startswith(wanted)}
    if sub:
        return sub, f'the keys under {wanted!r}'
    if is_official_beit3(state):
        from ..converters.unilm_beit3_tasks import map_official_beit3
        mapping = map_official_beit3(state, task='backbone')
        left = f'; not loaded: {_compact(mapping.unused)}' \
            if mapping.unused else ''
        return mapping.state_dict, (
            f'the official BEiT-3 keys (beit3.*, converted on the fly as '
            f'tools/model_converters/beit3_unilm_to_mmvlp.py does{left})')
    if _looks_like_backbone(state):
        return dict(state), 'the bare backbone keys'
    heads = sorted({k.split('.')[0] for k in state})
    raise ValueError(
        f'No BEiT3 weights found: no key starts with {wanted!r}, none is an '
        'official "beit3." key and the keys are not a bare backbone. '
        f'Top-level names in the checkpoint: {heads[:20]}. Set init_cfg\'s '
        'prefix to the backbone\'s prefix in that checkpoint (e.g. '
        '"backbone." for mmvlp pretraining and mmpretrain/mmdet/mmseg '
        'models).')


def _compact(keys: Iterable[str], limit: int = 12) -> str:
    """``layers.{0..11}.x`` style summary of key names."""
    from mmvlp.checkpoint.inspection import compact_keys
    return compact_keys(keys, limit)


def _resolve_path(checkpoint: str) -> str:
    """A DeepSpeed checkpoint directory resolves to its model-states file, a
    ``last_checkpoint`` file to the checkpoint it names."""
    from mmvlp.checkpoint.files import follow_checkpoint_pointer
    checkpoint = follow_checkpoint_pointer(checkpoint)
    if osp.isdir(checkpoint):
        candidate = osp.join(checkpoint, DEEPSPEED_MODEL_FILE)
        if osp.isfile(candidate):
            return candidate
        from mmvlp.checkpoint.inspection import CheckpointFileError
        raise CheckpointFileError(
            f'{checkpoint} is a directory without {DEEPSPEED_MODEL_FILE}; '
            'point init_cfg.checkpoint to a checkpoint file (a DeepSpeed '
            'ZeRO-3 directory needs `python zero_to_fp32.py DIR OUT.pth` '
            'first).')
    return checkpoint


def _literal(node: ast.AST) -> Any:
    """The value of a config expression made of literals and ``dict(...)``
    calls (what mmengine's ``Config.pretty_text`` writes); anything else
    reads as None. Nothing is executed."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == 'dict' and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys,
                                                         node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(v) for v in node.elts]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def _model_cfg_of(checkpoint: dict) -> Optional[dict]:
    """``model`` of the config that mmengine's Runner stores in a
    checkpoint's ``meta['cfg']`` (parsed, never executed), or None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == 'model'
                for t in statement.targets):
            value = _literal(statement.value)
            return value if isinstance(value, dict) else None
    return None


def saved_patch_grid(checkpoint: dict, prefix: str,
                     patch_size: int) -> Optional[Tuple[int, int]]:
    """The patch grid ``(h, w)`` the backbone under ``prefix`` was trained
    with, read from the config that mmengine's Runner saves in the
    checkpoint (``meta['cfg']``: ``model.<prefix>.img_size`` and
    ``patch_size``), or None when the checkpoint does not say.

    Args:
        checkpoint (dict): What ``torch.load`` returned.
        prefix (str): The backbone's prefix, e.g. ``'backbone.'``.
        patch_size (int): Used when the saved config names no patch size.
    """
    from ..layers import grid_of
    cfg = _model_cfg_of(checkpoint)
    for part in [p for p in prefix.split('.') if p]:
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    if not isinstance(cfg, dict) or cfg.get('img_size') is None:
        return None
    try:
        return grid_of(tuple(cfg['img_size']) if isinstance(
            cfg['img_size'], list) else cfg['img_size'],
                       int(cfg.get('patch_size') or patch_size))
    except (TypeError, ValueError):
        return None


def _resize_vision_table(model: nn.Module, state: Dict[str, torch.Tensor],
                         src_grid: Sequence[int], where: str) -> None:
    """Resample ``state['pos_embed_vision']`` from ``src_grid`` to the
    model's grid in place (bicubic, the CLS row kept)."""
    from ..layers import resize_pos_embed
    table = state.get('pos_embed_vision')
    own = getattr(model, 'pos_embed_vision', None)
    if table is None or own is None or table.dim() != 3 or \
            table.shape == own.shape:
        return
    src_grid = tuple(int(v) for v in src_grid)
    if table.shape[1] != 1 + src_grid[0] * src_grid[1]:
        raise ValueError(
            f'The position table has {table.shape[1] - 1} patch rows, not a '
            f'{src_grid[0]}x{src_grid[1]} grid ({where}); set '
            'pos_embed_grid=(h, w) in init_cfg to the grid the checkpoint '
            'was trained with.')
    grid = tuple(model.patch_grid)
    print_log(f'Resize pos_embed_vision from a {src_grid[0]}x{src_grid[1]} '
              f'grid ({where}) to {grid[0]}x{grid[1]} (bicubic).',
              logger='current')
    state['pos_embed_vision'] = resize_pos_embed(table, src_grid, grid)


def load_pretrained_beit3(model: nn.Module,
                          checkpoint: str,
                          prefix: Optional[str] = None,
                          map_location: str = 'cpu',
                          strict: Optional[bool] = None,
                          pos_embed_grid: Optional[Sequence[int]] = None
                          ) -> Tuple[List[str], List[str]]:
    """Load a checkpoint's backbone weights into ``model`` (a ``BEiT3``).

    The vision position table is resampled to the model's image size and a
    vision-only model drops the text parts, each with one log line (see
    ``BEiT3._load_from_state_dict``). The table's patch grid is
    ``pos_embed_grid`` when given, else the one of the config that
    mmengine's Runner saved in the checkpoint (``meta['cfg']``), else a
    square (as in every official checkpoint); a table whose rows are no
    square and whose grid the checkpoint does not name is refused. A final
    norm in the checkpoint that the model does not have
    (``final_norm=False``) is ignored with a note. What loaded is checked as
    every mmvlp load is (:mod:`mmvlp.checkpoint.fit`, purpose
    ``'init'``): the patch embedding and the layers must load, the file must
    have the model's depth and shapes; the rest may start fresh (one log
    line).

    Args:
        model (BEiT3): The backbone.
        checkpoint (str): File (or DeepSpeed checkpoint directory / URL).
        prefix (str, optional): The backbone's prefix in the checkpoint.
        map_location (str): As :func:`torch.load`. Defaults to ``'cpu'``.
        strict (bool, optional): None (default): the fit check; True: every
            key must match; False: load what fits (logged).
        pos_embed_grid (Sequence[int], optional): ``(h, w)`` patch grid of
            the checkpoint's vision position table (needed for a non-square
            grid when the checkpoint's saved config does not give it).

    Returns:
        tuple[list[str], list[str]]: Missing and unexpected keys (beyond the
        dropped text parts and an ignored final norm).

    Raises:
        CheckpointFileError: Not a checkpoint file.
        CheckpointFitError: No backbone weights, wrong shapes (another arch
            or patch size) or depth, ZeRO-3 placeholders, or (``strict``)
            key mismatches.
    """
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmvlp.checkpoint.fit import (FitReport, _effective,
                                      essential_parts, model_shapes)
    from mmvlp.checkpoint.inspection import (CheckpointFitError,
                                             check_checkpoint_file,
                                             summarize_checkpoint)
    if not checkpoint:
        raise ValueError(
            'init_cfg=dict(type="Pretrained") on BEiT3 has no checkpoint; '
            'set checkpoint= to a file, or init_cfg=None to train from '
            'scratch.')
    path = _resolve_path(checkpoint)
    check_checkpoint_file(path, "BEiT3 init_cfg's checkpoint")
    raw = _load_checkpoint(path, map_location)
    file = summarize_checkpoint(raw, path)
    state = extract_state_dict(raw)
    wanted = prefix or 'backbone.'
    wanted = wanted if wanted.endswith('.') else wanted + '.'
    prefixed = any(k.startswith(wanted) for k in state)
    try:
        state, source = select_backbone_keys(state, prefix)
    except ValueError as error:
        raise CheckpointFitError(
            f'{error}\n  The file holds {file.describe()}.\n  Its use: '
            f'{file.use}.') from None
    print_log(f'Load BEiT3 weights from {path}: {source}.',
              logger='current')

    own = model.state_dict()
    empty = [k for k, v in state.items() if v.numel() == 0 and k in own
             and own[k].numel() > 0]
    if empty:
        raise CheckpointFitError(
            f'{checkpoint} holds empty placeholders for {_compact(empty)}: '
            'a DeepSpeed ZeRO-3 checkpoint stores its weights partitioned. '
            'Consolidate them with `python zero_to_fp32.py CHECKPOINT_DIR '
            'OUT.pth` (written into the checkpoint directory by DeepSpeed) '
            'and load OUT.pth.')
    essential, heads = essential_parts(model)
    keys = list(own)

    def report(**kwargs) -> FitReport:
        return FitReport('BEiT3', 'init', keys, essential=essential,
                         heads=heads, source=str(checkpoint), file=file,
                         strict=_effective(strict), shapes_fatal=True,
                         shapes=model_shapes(model), **kwargs)

    if pos_embed_grid is not None:
        _resize_vision_table(model, state, pos_embed_grid, 'pos_embed_grid')
    elif prefixed and hasattr(model, 'patch_size'):
        saved = saved_patch_grid(raw, wanted, model.patch_size)
        if saved is not None:
            _resize_vision_table(model, state, saved,
                                 "the checkpoint's saved config")
    resized = ('pos_embed_vision', 'pos_embed_text')
    wrong = {k: (tuple(v.shape), tuple(own[k].shape))
             for k, v in state.items()
             if k in own and k not in resized and v.shape != own[k].shape}
    if wrong:
        raise CheckpointFitError(report(
            mismatched=wrong,
            unexpected=[k for k in state if k not in own],
            missing=[k for k in own if k not in state]).message())

    ignored = []
    if getattr(model, 'norm', True) is None:
        # (A vision-only model counts the text norm among the text parts.)
        text_dropped = getattr(model, 'vision_only', False)
        ignored = [k for k in state if k.startswith('norm.') and not (
            text_dropped and is_text_only_key(k))]
        for key in ignored:
            del state[key]
        if ignored:
            print_log(
                f'BEiT3 (final_norm=False): ignored the final norm of the '
                f'checkpoint ({len(ignored)} tensors).', logger='current')
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(
        result.unexpected_keys)
    report(missing=missing, unexpected=unexpected).check()
    return missing, unexpected
