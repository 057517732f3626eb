"""Optimizer-wrapper constructors."""
from .layer_decay import LayerDecayOptimWrapperConstructor
from .multi_optim import MultiOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor', 'MultiOptimWrapperConstructor']
