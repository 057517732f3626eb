"""Data transforms."""
from .masking import BlockwiseMaskGenerator, blockwise_mask
from .text import TokenizeText

__all__ = ['BlockwiseMaskGenerator', 'blockwise_mask', 'TokenizeText']
