"""Metrics that mmpretrain, mmdet and mmseg do not already provide."""
from .codebook import CodebookUsage
from .reconstruction import ReconstructionMetric, psnr, ssim

__all__ = ['CodebookUsage', 'ReconstructionMetric', 'psnr', 'ssim']
