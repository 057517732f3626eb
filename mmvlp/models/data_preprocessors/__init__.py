"""Data preprocessors."""
from .multi_source import MultiSourceDataPreprocessor

__all__ = ['MultiSourceDataPreprocessor']
