"""Optimizer-wrapper constructors."""
from .multi_optim import MultiOptimWrapperConstructor

__all__ = ['MultiOptimWrapperConstructor']
