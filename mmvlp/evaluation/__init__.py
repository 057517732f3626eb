"""Metrics that mmpretrain, mmdet and mmseg do not already provide."""
from .caption import CaptionMetric, caption_scores
from .codebook import CodebookUsage
from .masked_baselines import (NgramBaseline, nearest_visible,
                               visible_majority)
from .neighbours import knn_chance, knn_precision
from .reconstruction import ReconstructionMetric, psnr, ssim
from .rfid import ReconstructionFID, frechet_distance

__all__ = [
    'CodebookUsage', 'ReconstructionMetric', 'psnr', 'ssim',
    'ReconstructionFID', 'frechet_distance', 'CaptionMetric',
    'caption_scores', 'NgramBaseline', 'nearest_visible', 'visible_majority',
    'knn_precision', 'knn_chance'
]
