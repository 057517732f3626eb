"""Visual tokenizers: images to discrete token ids (MIM targets)."""
from .base import BaseVisualTokenizer
from .bsq_vit import BSQViT, contrastive_loss
from .losses import (PatchDiscriminator, PerceptualLoss, hinge_d_loss,
                     hinge_g_loss)
from .targets import (ColorHistogramTarget, FrozenTeacher, HOGTarget,
                      PixelNorm, PixelTarget)
from .vqkd import VQKD

__all__ = [
    'BaseVisualTokenizer', 'BSQViT', 'ColorHistogramTarget', 'contrastive_loss', 'FrozenTeacher',
    'HOGTarget', 'PixelNorm', 'PixelTarget', 'VQKD', 'PatchDiscriminator',
    'PerceptualLoss', 'hinge_d_loss', 'hinge_g_loss'
]
