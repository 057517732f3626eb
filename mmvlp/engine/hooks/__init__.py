"""Training hooks."""
from .codebook_health import CodebookHealthHook, find_quantizers
from .data_skip import DataSkipHook
from .tokenizer_visualization import (TokenizerVisualizationHook,
                                      token_map_colors)

__all__ = [
    'CodebookHealthHook', 'find_quantizers', 'DataSkipHook',
    'TokenizerVisualizationHook', 'token_map_colors'
]
