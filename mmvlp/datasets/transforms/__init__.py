"""Data transforms."""
from .loading import LoadImageSafe, decode_image
from .masking import BlockwiseMaskGenerator, TextMasking, blockwise_mask
from .packing import PackFields
from .text import TokenizeText
from .two_view import TwoViewCrop, sample_crop

__all__ = [
    'BlockwiseMaskGenerator', 'TextMasking', 'blockwise_mask', 'TokenizeText',
    'TwoViewCrop', 'sample_crop', 'PackFields', 'LoadImageSafe',
    'decode_image'
]
