"""Training hooks."""
from .codebook_health import CodebookHealthHook, find_quantizers
from .data_skip import DataSkipHook
from .nonfinite import NonFiniteLossHook, nonfinite_tensors
from .tokenizer_visualization import (TokenizerVisualizationHook,
                                      token_map_colors)
from .zero_shot_classes import ZeroShotClassesHook, clean_class_name

__all__ = [
    'CodebookHealthHook', 'find_quantizers', 'DataSkipHook',
    'NonFiniteLossHook', 'nonfinite_tensors',
    'TokenizerVisualizationHook', 'token_map_colors',
    'ZeroShotClassesHook', 'clean_class_name'
]
