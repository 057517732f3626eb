"""Image reconstruction quality: PSNR and SSIM (and their metric)."""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from mmvlp.registry import METRICS


def psnr(pred: torch.Tensor, target: torch.Tensor,
         data_range: float = 255.) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        pred (Tensor): ``(B, C, H, W)`` reconstructions.
        target (Tensor): ``(B, C, H, W)`` originals, same scale.
        data_range (float): Value range (255 for 8-bit pixels).

    Returns:
        Tensor: ``(B,)`` PSNR (``inf`` for identical images).
    """
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.double) - (size - 1) / 2
    kernel = torch.exp(-coords**2 / (2 * sigma**2))
    return kernel / kernel.sum()


def ssim(pred: torch.Tensor,
         target: torch.Tensor,
         data_range: float = 255.,
         window_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), channel-averaged.

    Gaussian-weighted local statistics over valid windows, ``K1=0.01``,
    ``K2=0.03`` and sample covariance, i.e. the settings of
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    use_sample_covariance=False)`` (its window is 11 taps for sigma 1.5).

    Args:
        pred (Tensor): ``(B, C, H, W)`` reconstructions.
        target (Tensor): ``(B, C, H, W)`` originals.
        data_range (float): Value range.
        window_size (int): Side of the Gaussian window (odd).
        sigma (float): Standard deviation of the window.

    Returns:
        Tensor: ``(B,)`` mean SSIM.
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f'ssim needs two (B, C, H, W) tensors of one shape, '
                         f'got {tuple(pred.shape)} and {tuple(target.shape)}.')
    channels = pred.shape[1]
    kernel_1d = _gaussian_window(window_size, sigma)
    kernel = (kernel_1d[:, None] * kernel_1d[None, :]).expand(
        channels, 1, window_size, window_size)
    x, y = pred.double(), target.double()

    def blur(t):
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range)**2, (0.03 * data_range)**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.flatten(1).mean(1)


@METRICS.register_module()
class ReconstructionMetric(BaseMetric):
    """Mean PSNR and SSIM between reconstructions and originals.

    Expects each data sample to carry ``recon`` and ``image`` as ``(3, H, W)``
    tensors in [0, 255] (what the tokenizers' ``predict`` returns).

    Args:
        collect_device (str): Device for gathering results across ranks.
        prefix (str, optional): Metric name prefix.
    """
    default_prefix = 'recon'

    def __init__(self,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'recon' not in sample or 'image' not in sample:
                raise KeyError('ReconstructionMetric needs `recon` and '
                               '`image` in each predicted sample.')
            recon = sample['recon'].float().clamp(0, 255)[None].cpu()
            image = sample['image'].float()[None].cpu()
            self.results.append(
                dict(psnr=psnr(recon, image).item(),
                     ssim=ssim(recon, image).item()))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        count = max(1, len(results))
        return dict(
            psnr=sum(r['psnr'] for r in results) / count,
            ssim=sum(r['ssim'] for r in results) / count)
