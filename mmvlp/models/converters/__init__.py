"""Checkpoint converters from reference implementations to mmvlp names."""
from .unilm_beit3 import (ConversionReport, convert_unilm_beit3,
                          unwrap_checkpoint)
from .qlip import QLIPConversion, convert_qlip, load_qlip
from .vqkd import VQKDConversion, convert_vqkd

__all__ = [
    'ConversionReport', 'convert_unilm_beit3', 'unwrap_checkpoint',
    'VQKDConversion', 'convert_vqkd', 'QLIPConversion', 'convert_qlip',
    'load_qlip'
]
