"""Necks that turn the single-stride BEiT-3 maps into feature pyramids."""
from .simple_fpn import LN2d, SimpleFPN

__all__ = ['SimpleFPN', 'LN2d']
