"""Data transforms."""
from .masking import BlockwiseMaskGenerator, TextMasking, blockwise_mask
from .text import TokenizeText

__all__ = [
    'BlockwiseMaskGenerator', 'TextMasking', 'blockwise_mask', 'TokenizeText'
]
