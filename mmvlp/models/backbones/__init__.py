"""Backbones."""
from .beit3 import ARCH_SETTINGS, BEiT3, MultiwayOutput

__all__ = ['ARCH_SETTINGS', 'BEiT3', 'MultiwayOutput']
