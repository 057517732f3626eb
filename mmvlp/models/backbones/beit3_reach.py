"""Which BEiT-3 parameters a task runs.

A task model encodes some kinds of sequences: VQA, NLVR2 and captioning
image+text pairs, retrieval images and texts separately. Parameters that
take no part in those forward passes get no gradient at all, and
``DistributedDataParallel`` (``find_unused_parameters=False``) then stops at
the second iteration ("Expected to have finished reduction in the prior
iteration"). :func:`freeze_unused` freezes exactly those parameters, so
DDP, FSDP and ZeRO see only parameters that take part, and nothing changes
in training (AdamW skips parameters without a gradient; they are still
saved and loaded).

What a task never runs follows from the layout: the mask token (tasks
never mask patches); the experts of a modality no sequence has; the
vision-language FFN experts (``layout='shared'``) when images and texts are
encoded separately, and the per-modality FFN experts of those layers when
every sequence is a pair. Parameters that do run but cannot influence what
a task reads (the last layer's text branch in VQA, which reads the vision
CLS) get zero gradients, which DDP accepts; they stay trainable, as in the
official fine-tuning code. ``tests/test_vl_reach.py`` checks the result
against the parameters that get no gradient in real backward passes, for
both layouts.
"""
from typing import Iterable, List, Set

import torch.nn as nn

from ..layers.multiway import TEXT, VISION, expert_of

#: The sequence kinds and the modalities of their tokens.
SEQUENCE_KINDS = {'image': (VISION, ), 'text': (TEXT, ),
                  'pair': (VISION, TEXT)}
_EMBEDDINGS = {VISION: ('patch_embed', 'cls_token', 'pos_embed_vision'),
               TEXT: ('text_embed', 'pos_embed_text')}


def used_modules(backbone: nn.Module, sequences: Iterable[str],
                 vision_mask: bool = False) -> Set:
    """The modules and parameters of ``backbone`` that encoding
    ``sequences`` runs.

    Args:
        backbone (BEiT3): The backbone.
        sequences (Iterable[str]): The kinds of sequences the task encodes:
            ``'image'``, ``'text'`` and/or ``'pair'`` (image + text).
        vision_mask (bool): The task replaces patches by the mask token.

    Returns:
        set: Modules and parameters that take part (and get gradients).
    """
    used: Set = set()
    for kind in set(sequences):
        if kind not in SEQUENCE_KINDS:
            raise ValueError(f'Unknown sequence kind {kind!r}; choose one of '
                             f'{tuple(SEQUENCE_KINDS)}.')
        fuse = kind == 'pair'
        for modality in SEQUENCE_KINDS[kind]:
            used.update(getattr(backbone, name)
                        for name in _EMBEDDINGS[modality])
            if backbone.norm is not None:
                used.add(expert_of(backbone.norm, modality))
            for layer in backbone.layers:
                attn = layer.attn
                used.update(expert_of(module, modality) for module in (
                    layer.norm1, attn.qkv, attn.inner_norm, attn.proj)
                    if module is not None)
                used.add(expert_of(layer.norm2, modality, fuse))
                used.add(expert_of(layer.ffn, modality, fuse))
    if vision_mask:
        used.add(backbone.mask_token)
    return used


def unused_parameters(backbone: nn.Module, sequences: Iterable[str],
                      vision_mask: bool = False) -> List[str]:
    """Names of the parameters of ``backbone`` that encoding ``sequences``
    never runs (see :func:`used_modules`)."""
    reached = set()
    for item in used_modules(backbone, sequences, vision_mask):
        if isinstance(item, nn.Module):
            reached.update(id(p) for p in item.parameters())
        elif item is not None:
            reached.add(id(item))
    return [name for name, param in backbone.named_parameters()
            if id(param) not in reached]


def freeze_unused(backbone: nn.Module, sequences: Iterable[str],
                  vision_mask: bool = False) -> List[str]:
    """Freeze (``requires_grad=False``) the parameters of ``backbone`` that
    a task encoding ``sequences`` never runs; returns their names.

    Args:
        backbone (BEiT3): The backbone, changed in place.
        sequences (Iterable[str]): See :func:`used_modules`.
        vision_mask (bool): The task masks patches.
    """
    names = unused_parameters(backbone, sequences, vision_mask)
    params = dict(backbone.named_parameters())
    for name in names:
        params[name].requires_grad_(False)
    return names


__all__ = ['SEQUENCE_KINDS', 'used_modules', 'unused_parameters',
           'freeze_unused']
