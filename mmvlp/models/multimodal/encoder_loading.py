"""Loading any BEiT-3 checkpoint into a dual encoder (``BEiT3Retrieval``).

Feature extraction and zero-shot classification take whatever BEiT-3 file a
user has: an mmvlp pretraining or fine-tuning checkpoint, a converted
official file or an official file as downloaded. The backbone goes through
its standard route, the ``Pretrained`` ``init_cfg`` of ``BEiT3``
(:func:`~mmvlp.models.backbones.beit3_checkpoint.load_pretrained_beit3`,
which knows every layout); the retrieval heads (``vision_head``,
``language_head``, ``logit_scale``) carry the same names in the official
retrieval / ``itc`` files and in mmvlp's ``BEiT3Retrieval``, so they are
read by name. A file without heads gives backbone features only.
"""
import logging
from contextlib import contextmanager
from typing import Dict, List, Tuple

import torch
from mmengine.logging import MMLogger, print_log

from ..backbones.beit3_checkpoint import (extract_state_dict,
                                          select_backbone_keys)

__all__ = ['RETRIEVAL_HEAD_NAMES', 'head_weights', 'encoder_state_dict',
           'load_encoder_checkpoint', 'read_checkpoint_state']

#: Parameters of a ``BEiT3Retrieval`` beside its backbone.
RETRIEVAL_HEAD_NAMES = ('vision_head.weight', 'language_head.weight',
                        'logit_scale')


def read_checkpoint_state(checkpoint: str) -> Dict[str, torch.Tensor]:
    """The parameters of a checkpoint file (or DeepSpeed directory), in any
    layout :func:`extract_state_dict` knows, with the official task heads
    that ``tools/model_converters/beit3_unilm_to_mmvlp.py`` keeps aside
    under ``task_heads``."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from ..backbones.beit3_checkpoint import _resolve_path
    raw = _load_checkpoint(_resolve_path(checkpoint), map_location='cpu')
    state = extract_state_dict(raw)
    aside = raw.get('task_heads') if isinstance(raw, dict) else None
    for key, value in (aside or {}).items():
        if isinstance(value, torch.Tensor):
            state.setdefault(key, value)
    return state


def _encoder_prefix(state: Dict[str, torch.Tensor]) -> str:
    """``'encoder.'`` for checkpoints of a model that holds the dual encoder
    as ``encoder`` (``ZeroShotClassifier``), else ``''``."""
    return 'encoder.' if any(k.startswith('encoder.backbone.')
                             for k in state) else ''


def head_weights(state: Dict[str, torch.Tensor],
                 names: Tuple[str, ...] = RETRIEVAL_HEAD_NAMES
                 ) -> Dict[str, torch.Tensor]:
    """The retrieval heads in a checkpoint's parameters (official and mmvlp
    names, also under ``encoder.``)."""
    prefix = _encoder_prefix(state)
    return {name: state[prefix + name] for name in names
            if prefix + name in state}


def encoder_state_dict(state: Dict[str, torch.Tensor],
                       names: Tuple[str, ...] = RETRIEVAL_HEAD_NAMES
                       ) -> Tuple[Dict[str, torch.Tensor], str]:
    """A checkpoint's parameters in ``BEiT3Retrieval``'s names.

    The backbone's weights are found as the backbone's loader finds them
    (:func:`~mmvlp.models.backbones.beit3_checkpoint.select_backbone_keys`:
    ``backbone.*``, official ``beit3.*`` converted on the fly, or a bare
    converted backbone); the heads by :func:`head_weights`.

    Args:
        state (dict): Parameters (see :func:`extract_state_dict`).
        names (tuple): The head parameters to take.

    Returns:
        tuple: The state dict (``backbone.*`` and the heads found) and where
        the backbone came from.
    """
    prefix = _encoder_prefix(state)
    backbone, source = select_backbone_keys(state, prefix + 'backbone.')
    out = {f'backbone.{k}': v for k, v in backbone.items()}
    out.update(head_weights(state, names))
    return out, source


class _NoInitDump(logging.Filter):
    """Drops mmengine's per-parameter initialisation report (one record per
    tensor, written when ``init_weights`` runs on a top-level module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith('\n') and ' - torch.Size(' in message)


@contextmanager
def _without_init_dump():
    logger = MMLogger.get_current_instance()
    quiet = _NoInitDump()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def load_encoder_checkpoint(model,
                            checkpoint: str,
                            require_heads: bool = False) -> Dict[str, list]:
    """Load any BEiT-3 checkpoint into a ``BEiT3Retrieval``-like model.

    The backbone through its ``Pretrained`` ``init_cfg`` (the loader's
    messages and checks: resized position tables, shapes, ZeRO-3
    placeholders, official keys); the heads by name.

    Args:
        model (BEiT3Retrieval): Built model (any model with ``backbone`` and
            the parameters of :data:`RETRIEVAL_HEAD_NAMES`).
        checkpoint (str): The file.
        require_heads (bool): Raise when the file has no retrieval heads.

    Returns:
        dict: ``heads`` (loaded head parameters) and ``missing_heads``.

    Raises:
        ValueError: No backbone weights, shapes that do not fit, or (with
            ``require_heads``) no heads.
    """
    state = read_checkpoint_state(checkpoint)
    prefix = _encoder_prefix(state)
    model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                                   prefix=prefix + 'backbone.')
    model.backbone._is_init = False
    with _without_init_dump():
        model.backbone.init_weights()
    own = dict(model.named_parameters())
    names = tuple(n for n in RETRIEVAL_HEAD_NAMES if n in own)
    heads = head_weights(state, names)
    wrong = [f'{k}: {tuple(v.shape)} (model {tuple(own[k].shape)})'
             for k, v in heads.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f'The retrieval heads of {checkpoint} do not fit '
                         f'the model (embed_dims?): {"; ".join(wrong)}')
    model.load_state_dict(heads, strict=False)
    missing: List[str] = [n for n in names if n not in heads]
    if missing and require_heads:
        raise ValueError(
            f'{checkpoint} has no retrieval heads ({", ".join(missing)} '
            'missing): zero-shot matching needs a retrieval or itc checkpoint '
            '(an official *_retrieval.pth / *_itc_*.pth file, or an mmvlp '
            'BEiT3Retrieval fine-tuning checkpoint, e.g. from configs/demo/'
            'beit3-tiny-p8_demo-vl-retrieval.py).')
    if heads:
        print_log(f'Loaded the retrieval heads of {checkpoint}: '
                  f'{", ".join(sorted(heads))}.', logger='current')
    return dict(heads=sorted(heads), missing_heads=missing)
