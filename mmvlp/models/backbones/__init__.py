"""Backbones."""
from .beit3 import ARCH_SETTINGS, BEiT3, KVCache, MultiwayOutput
from .vit import VIT_ARCHS, ViTEncoder

__all__ = ['ARCH_SETTINGS', 'BEiT3', 'KVCache', 'MultiwayOutput', 'VIT_ARCHS',
           'ViTEncoder']
