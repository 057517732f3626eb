"""One optimizer wrapper per named part of a model (GAN-style training)."""
import copy

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict

from mmvlp.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MultiOptimWrapperConstructor:
    """Build an ``OptimWrapperDict`` from one config per model part.

    The model names its parts with ``optim_parts() -> dict[str, nn.Module]``
    (e.g. ``generator`` and ``discriminator``); each part gets the optimizer
    wrapper configured under its name::

        optim_wrapper = dict(
            constructor='MultiOptimWrapperConstructor',
            generator=dict(optimizer=dict(type='AdamW', lr=1e-4)),
            discriminator=dict(optimizer=dict(type='AdamW', lr=1e-4)))

    Args:
        optim_wrapper_cfg (dict): Part name to optimizer-wrapper config (each
            may carry its own ``paramwise_cfg``).
        paramwise_cfg (dict, optional): Applied to parts without their own.
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: dict = None) -> None:
        if not optim_wrapper_cfg or not all(
                isinstance(v, dict) for v in optim_wrapper_cfg.values()):
            raise ValueError('MultiOptimWrapperConstructor needs one dict per '
                             'model part, e.g. generator=dict(optimizer=...)'
                             f', got {optim_wrapper_cfg}.')
        self.optim_wrapper_cfg = optim_wrapper_cfg
        self.paramwise_cfg = paramwise_cfg

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        if hasattr(model, 'module'):
            model = model.module
        if not hasattr(model, 'optim_parts'):
            raise ValueError(f'{type(model).__name__} has no optim_parts(); '
                             'MultiOptimWrapperConstructor needs the model to '
                             'name its parts.')
        parts = model.optim_parts()
        unknown = set(self.optim_wrapper_cfg) - set(parts)
        missing = set(parts) - set(self.optim_wrapper_cfg)
        if unknown or missing:
            raise ValueError(
                f'optim_wrapper parts {sorted(self.optim_wrapper_cfg)} do '
                f'not match the model parts {sorted(parts)}.')
        wrappers = {}
        for name, cfg in self.optim_wrapper_cfg.items():
            cfg = copy.deepcopy(cfg)
            cfg.setdefault('type', 'OptimWrapper')
            paramwise = cfg.pop('paramwise_cfg', self.paramwise_cfg)
            wrappers[name] = DefaultOptimWrapperConstructor(
                cfg, paramwise)(parts[name])
        return OptimWrapperDict(**wrappers)
