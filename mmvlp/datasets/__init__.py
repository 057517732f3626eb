"""Datasets, demo data and data transforms."""
from .demo_data import make_demo_dataset
from .image_text import ImageTextDataset
from .text_corpus import TextCorpusDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['make_demo_dataset', 'ImageTextDataset', 'TextCorpusDataset']
