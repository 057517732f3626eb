"""Checkpoint converters from reference implementations to mmvlp names."""
from .unilm_beit3 import (ConversionReport, convert_unilm_beit3,
                          unwrap_checkpoint)

__all__ = ['ConversionReport', 'convert_unilm_beit3', 'unwrap_checkpoint']
