"""Visual tokenizers: images to discrete token ids (MIM targets)."""
from .targets import FrozenTeacher, HOGTarget, PixelNorm, PixelTarget
from .vqkd import VQKD

__all__ = ['FrozenTeacher', 'HOGTarget', 'PixelNorm', 'PixelTarget', 'VQKD']
