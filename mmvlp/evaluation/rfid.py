"""Reconstruction FID (rFID) with Inception-v3 weights the user supplies."""
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from torchvision.models import inception_v3

from mmvlp.registry import METRICS
from mmvlp.compat.torch_load import safe_torch_load


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor,
                     mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Fréchet distance between two Gaussians.

    ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``, with the trace of
    the matrix square root computed as the sum of square roots of the
    eigenvalues of ``S1^{1/2} S2 S1^{1/2}`` (symmetric PSD), in float64.

    Args:
        mu1, mu2 (Tensor): ``(D,)`` means.
        sigma1, sigma2 (Tensor): ``(D, D)`` covariances.

    Returns:
        float: The distance.
    """
    mu1, mu2 = mu1.double(), mu2.double()
    sigma1, sigma2 = sigma1.double(), sigma2.double()
    values, vectors = torch.linalg.eigh(sigma1)
    root1 = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.t()
    middle = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.t()) / 2).clamp(
        min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() -
                 2 * trace_sqrt)


class InceptionFeatures(nn.Module):
    """2048-d pool features of torchvision's Inception-v3.

    Args:
        checkpoint (str): torchvision ``inception_v3`` state dict
            (``inception_v3_google-0cc3c7bd.pth``). Required.
    """

    def __init__(self, checkpoint: Optional[str]) -> None:
        super().__init__()
        if not checkpoint or not osp.isfile(checkpoint):
            raise FileNotFoundError(
                'rFID needs Inception-v3 weights: set inception_checkpoint to '
                'a torchvision inception_v3 state dict (nothing is downloaded '
                f'automatically); got {checkpoint!r}.')
        network = inception_v3(weights=None, aux_logits=True,
                               init_weights=False, transform_input=False)
        state = safe_torch_load(checkpoint, 'cpu')
        network.load_state_dict(state.get('state_dict', state))
        network.fc = nn.Identity()
        self.network = network.eval().requires_grad_(False)
        self.register_buffer(
            'mean', torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer(
            'std', torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` pixels in [0, 255] to ``(B, 2048)``."""
        x = F.interpolate(images.float() / 255., size=(299, 299),
                          mode='bilinear', align_corners=False)
        return self.network((x - self.mean) / self.std)


@METRICS.register_module()
class ReconstructionFID(BaseMetric):
    """FID between reconstructions and their originals over a dataset.

    Expects ``recon`` and ``image`` (``(3, H, W)`` in [0, 255]) per sample.

    Args:
        inception_checkpoint (str): Inception-v3 weights (required; a clear
            error is raised without them).
        collect_device (str): Device for gathering results across ranks.
        prefix (str, optional): Metric name prefix.
    """
    default_prefix = 'recon'

    def __init__(self,
                 inception_checkpoint: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.inception = InceptionFeatures(inception_checkpoint)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        recon = torch.stack([s['recon'] for s in data_samples]).cpu()
        image = torch.stack([s['image'] for s in data_samples]).cpu()
        feats = self.inception(torch.cat([recon, image]))
        for index in range(len(data_samples)):
            self.results.append(
                dict(recon=feats[index],
                     image=feats[len(data_samples) + index]))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        if len(results) < 2:
            raise ValueError('rFID needs at least 2 images.')
        stats = []
        for key in ('recon', 'image'):
            feats = torch.stack([r[key] for r in results]).double()
            stats += [feats.mean(0), torch.cov(feats.t())]
        return dict(rfid=frechet_distance(*stats))
