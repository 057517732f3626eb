"""Backbones."""
from .beit3 import ARCH_SETTINGS, BEiT3, MultiwayOutput
from .vit import VIT_ARCHS, ViTEncoder

__all__ = ['ARCH_SETTINGS', 'BEiT3', 'MultiwayOutput', 'VIT_ARCHS',
           'ViTEncoder']
