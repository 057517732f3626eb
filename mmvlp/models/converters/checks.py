"""Validation shared by the converters."""
from typing import Dict

import torch
import torch.nn as nn


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
