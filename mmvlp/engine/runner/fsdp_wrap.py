"""FSDP auto-wrap policy for mmvlp's transformers."""
from typing import Sequence

import torch.nn as nn

from mmvlp.registry import FUNCTIONS


@FUNCTIONS.register_module()
def multiway_layer_wrap_policy(
        module: nn.Module,
        recurse: bool,
        nonwrapped_numel: int,
        layer_types: Sequence[str] = ('MultiwayTransformerLayer', )) -> bool:
    """Make every Multiway Transformer layer its own FSDP unit.

    An FSDP ``auto_wrap_policy``: ``FSDPStrategy(model_wrapper=dict(
    auto_wrap_policy=dict(type='multiway_layer_wrap_policy')))``. Each
    ``MultiwayTransformerLayer`` (the layers of ``BEiT3``, of the
    tokenizers' ViTs and of their decoders) gathers its parameters just
    before it runs and frees them after, so a process holds one layer's
    full weights at a time; the embeddings, heads and norms stay in the root
    unit. Works with the backbone's activation checkpointing
    (``with_cp=True``): the recomputation gathers the layer again.

    Args:
        module (nn.Module): The candidate module.
        recurse (bool): Whether FSDP asks to descend into ``module``.
        nonwrapped_numel (int): Parameters not yet wrapped (unused).
        layer_types (Sequence[str]): Class names to wrap.

    Returns:
        bool: Descend (always) or wrap ``module``.
    """
    if recurse:
        return True
    return type(module).__name__ in tuple(layer_types)
