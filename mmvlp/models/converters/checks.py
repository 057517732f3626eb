"""Validation shared by the converters."""
from typing import Dict

import torch
import torch.nn as nn

from mmvlp.registry import MODELS


def registered_model(name: str) -> type:
    """The mmvlp model class registered as ``name`` in ``MODELS``.

    The converters of official BEiT-3 files look up the models they check
    against or map onto by name: those models load official files through
    the converters, so importing them here would close an import cycle.

    Args:
        name (str): The registered name, e.g. ``'BEiT3'``.

    Raises:
        KeyError: No model is registered under ``name``.
    """
    model_type = MODELS.get(name)
    if model_type is None:
        raise KeyError(f'No model {name!r} in mmvlp\'s MODELS registry.')
    return model_type


def check_against_model(state: Dict[str, torch.Tensor], model_type: type,
                        cfg: dict, what: str) -> None:
    """Compare keys and shapes with ``model_type(**cfg)`` built on meta.

    Args:
        state (dict): Converted weights.
        model_type (type): The mmvlp model class the weights are for.
        cfg (dict): Its constructor arguments (``type`` is ignored).
        what (str): Description for the error message.

    Raises:
        ValueError: Listing missing, unexpected and wrongly shaped keys.
    """
    cfg = {k: v for k, v in cfg.items() if k != 'type'}
    with torch.device('meta'):
        model: nn.Module = model_type(**cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(f'{k}: {got[k]} (expected {expected[k]})'
                   for k in set(got) & set(expected) if got[k] != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(f'The converted weights do not form a consistent '
                         f'{what}.\n  missing: {missing}\n  unexpected: '
                         f'{unexpected}\n  wrong shape: {wrong}')
