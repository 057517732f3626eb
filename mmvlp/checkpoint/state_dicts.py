"""The parameter dict inside a checkpoint, whatever wrote it (mmengine,
DeepSpeed, FSDP, official BEiT-3, timm)."""
from typing import Dict, Sequence

import torch

__all__ = ['extract_state_dict', 'find_tensors']

#: Keys that wrap a model's parameter names (DDP, FSDP, activation
#: checkpointing, torch.compile).
_WRAPPER_PARTS = ('_fsdp_wrapped_module', '_checkpoint_wrapped_module',
                  '_orig_mod')


def _strip_wrappers(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove DDP / FSDP / checkpoint-wrapper / compile parts of key names."""
    out = {}
    for key, value in state.items():
        parts = [p for p in key.split('.') if p not in _WRAPPER_PARTS]
        if parts and parts[0] == 'module':
            parts = parts[1:]
        out['.'.join(parts)] = value
    return out


def find_tensors(checkpoint: dict,
                 keys: Sequence[str] = ('state_dict', 'module', 'model')
                 ) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint dict, looked for under ``keys`` (in that
    order of preference, nested at most three deep) or at its top level.

    Args:
        checkpoint (dict): What ``torch.load`` returned.
        keys (Sequence[str]): The wrapper keys to descend into.

    Returns:
        dict: Name to tensor (other entries dropped; empty if none).
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f'Expected a dict checkpoint, got '
                         f'{type(checkpoint).__name__}.')
    state = checkpoint
    for _ in range(3):
        if any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        for key in keys:
            if isinstance(state.get(key), dict) and state[key]:
                state = state[key]
                break
        else:
            break
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def extract_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The parameter dict of a checkpoint in any of the supported layouts.

    Unwraps ``state_dict`` (mmengine, DeepSpeed without optimizer, FSDP
    full), ``module`` (DeepSpeed ``mp_rank_00_model_states.pt``, official
    BEiT-3) and ``model`` (official BEiT-3, timm), nested at most three
    deep, keeps tensors only and strips wrapper names from the keys.

    Args:
        checkpoint (dict): What ``torch.load`` returned.

    Returns:
        dict: Parameter name to tensor.
    """
    tensors = find_tensors(checkpoint)
    if not tensors:
        raise ValueError(
            'The checkpoint holds no tensors under "state_dict", "module" or '
            f'"model" (top-level keys: {sorted(checkpoint)[:10]}).')
    return _strip_wrappers(tensors)
