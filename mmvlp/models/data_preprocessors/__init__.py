"""Data preprocessors."""
from .multi_source import MultiSourceDataPreprocessor
from .vl import VLDataPreprocessor

__all__ = ['MultiSourceDataPreprocessor', 'VLDataPreprocessor']
