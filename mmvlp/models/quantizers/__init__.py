"""Quantizers turning channels-last features into discrete codes."""
from .base import QuantizerOutput
from .bsq import BinarySphericalQuantizer, kwargs_from_official
from .norm_ema import NormEMAVectorQuantizer

__all__ = [
    'QuantizerOutput', 'NormEMAVectorQuantizer', 'BinarySphericalQuantizer',
    'kwargs_from_official'
]
