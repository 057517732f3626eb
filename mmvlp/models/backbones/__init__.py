"""Backbones."""
from .beit3 import ARCH_SETTINGS, BEiT3, KVCache, MultiwayOutput
from .text_transformer import TEXT_ARCHS, CLIPTextTransformer
from .vit import VIT_ARCHS, ViTEncoder

__all__ = ['ARCH_SETTINGS', 'BEiT3', 'KVCache', 'MultiwayOutput', 'VIT_ARCHS',
           'ViTEncoder', 'TEXT_ARCHS', 'CLIPTextTransformer']
