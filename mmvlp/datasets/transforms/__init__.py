"""Data transforms."""
from .loading import LoadImageSafe, decode_image, read_image_file
from .masking import BlockwiseMaskGenerator, TextMasking, blockwise_mask
from .multi_image import ForEachImage
from .packing import PackFields, PackVLInputs
from .text import TokenizeText
from .two_view import TwoViewCrop, sample_crop

__all__ = [
    'BlockwiseMaskGenerator', 'TextMasking', 'blockwise_mask', 'TokenizeText',
    'TwoViewCrop', 'sample_crop', 'PackFields', 'PackVLInputs',
    'LoadImageSafe', 'decode_image', 'read_image_file', 'ForEachImage'
]
