"""Image classifiers built on BEiT-3."""
from .beit3_classifier import BEiT3ImageClassifier

__all__ = ['BEiT3ImageClassifier']
