"""Optimizer wrappers and their constructors."""
from .amp import AmpOptimWrapper, cpu_bf16_support
from .layer_decay import LayerDecayOptimWrapperConstructor
from .multi_optim import MultiOptimWrapperConstructor

__all__ = [
    'AmpOptimWrapper', 'cpu_bf16_support',
    'LayerDecayOptimWrapperConstructor', 'MultiOptimWrapperConstructor'
]
