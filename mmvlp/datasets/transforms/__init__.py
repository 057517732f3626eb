"""Data transforms."""
from .text import TokenizeText

__all__ = ['TokenizeText']
