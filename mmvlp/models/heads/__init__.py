"""Prediction heads."""
from .cls_head import BEiT3ClsHead
from .masked_token import MaskedTokenHead

__all__ = ['BEiT3ClsHead', 'MaskedTokenHead']
