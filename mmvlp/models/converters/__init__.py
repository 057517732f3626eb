"""Checkpoint converters from reference implementations to mmvlp names."""
from .unilm_beit3 import (ConversionReport, convert_unilm_beit3,
                          unwrap_checkpoint)
from .vqkd import VQKDConversion, convert_vqkd

__all__ = [
    'ConversionReport', 'convert_unilm_beit3', 'unwrap_checkpoint',
    'VQKDConversion', 'convert_vqkd'
]
