"""Prediction heads."""
from .masked_token import MaskedTokenHead

__all__ = ['MaskedTokenHead']
