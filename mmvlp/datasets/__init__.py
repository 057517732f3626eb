"""Datasets, demo data and data transforms."""
from .demo_data import make_demo_dataset

__all__ = ['make_demo_dataset']
