"""Quantizers turning channels-last features into discrete codes."""
from .base import QuantizerOutput
from .bsq import BinarySphericalQuantizer
from .norm_ema import NormEMAVectorQuantizer

__all__ = [
    'QuantizerOutput', 'NormEMAVectorQuantizer', 'BinarySphericalQuantizer'
]
