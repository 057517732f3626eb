"""Per-patch regression targets for training visual tokenizers.

Every target maps raw images (pixels in [0, 255], ``(B, 3, H, W)``) to
``(B, h*w, out_dims)`` features on the tokenizer's patch grid:

* :class:`FrozenTeacher` -- any registered model (a CLIP/DINO/BEiT-3 vision
  tower loaded from a checkpoint), frozen, as in BEiT v2's VQ-KD;
* :class:`HOGTarget` -- histograms of oriented gradients (MaskFeat), needs no
  weights, so a tokenizer can be trained offline;
* :class:`PixelTarget` -- per-patch normalised pixels (MAE);
* :class:`ColorHistogramTarget` -- per-patch colour histograms.
"""
import os.path as osp
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.selfsup.maskfeat import HOGGenerator

from mmvlp.registry import MODELS, build_scoped
from mmvlp.utils.checks import check_on_device


def check_raw_pixels(images: torch.Tensor, who: str) -> None:
    """Refuse inputs that were already normalised.

    Tokenizers and targets normalise raw pixels themselves, with the mean and
    std they declare, so a pipeline cannot feed them wrongly scaled data.

    Args:
        images (Tensor): ``(B, 3, H, W)`` images.
        who (str): Name of the caller, for the message.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f'{who} expects (B, 3, H, W) images, got shape '
                         f'{tuple(images.shape)}.')
    if images.is_floating_point() and images.numel():
        # Checked on the device (no host sync in a training step).
        low, high = images.aminmax()
        check_on_device(
            (low >= -1e-3) & (high <= 255 + 1e-3),
            lambda: f'{who} expects raw pixels in [0, 255] (it normalises '
            f'them with its own mean/std); got values in [{low.item():.2f}, '
            f'{high.item():.2f}]. Feed the un-normalised view.',
            f'{who} expects raw pixels in [0, 255]; feed the un-normalised '
            'view.')


class PixelNorm(nn.Module):
    """``(x - mean) / std`` with per-channel statistics in 0-255 units.

    Args:
        mean (Sequence[float]): Channel means.
        std (Sequence[float]): Channel standard deviations.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f'mean and std need 3 values with std > 0, got '
                             f'{list(mean)} / {list(std)}.')
        self.register_buffer(
            'mean', torch.tensor(mean, dtype=torch.float).view(1, 3, 1, 1),
            persistent=False)
        self.register_buffer(
            'std', torch.tensor(std, dtype=torch.float).view(1, 3, 1, 1),
            persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise raw ``(B, 3, H, W)`` pixels."""
        return (images.float() - self.mean) / self.std


def _patch_tokens(output, num_extra_tokens: int) -> torch.Tensor:
    """Turn a model output into ``(B, N, C)`` patch features."""
    if isinstance(output, (tuple, list)):
        output = output[-1]
    if output.dim() == 4:  # (B, C, h, w) feature map
        return output.flatten(2).transpose(1, 2)
    if output.dim() == 3:  # (B, [extra +] N, C) tokens
        return output[:, num_extra_tokens:]
    raise ValueError(f'Cannot read patch features from an output of shape '
                     f'{tuple(output.shape)}; use a model returning '
                     '(B, C, h, w) maps or (B, N, C) tokens.')


@MODELS.register_module()
class FrozenTeacher(BaseModule):
    """A frozen model whose patch features are the regression target.

    Args:
        model (dict): Config of any registered model (e.g.
            ``dict(type='mmvlp.BEiT3', out_type='featmap', init_cfg=dict(
            type='Pretrained', checkpoint=...))``).
        out_dims (int): Width of its patch features.
        mean (Sequence[float]): Pixel mean the teacher expects (0-255 units).
        std (Sequence[float]): Pixel std the teacher expects.
        num_extra_tokens (int): Leading non-patch tokens to drop when the
            model returns ``(B, N, C)`` tokens.
        require_pretrained (bool): Refuse a teacher without pretrained
            weights (a random teacher teaches nothing).
    """

    def __init__(self,
                 model: dict,
                 out_dims: int,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 num_extra_tokens: int = 1,
                 require_pretrained: bool = True) -> None:
        super().__init__()
        init_cfg = model.get('init_cfg') or {}
        if require_pretrained and not (isinstance(init_cfg, dict) and
                                       init_cfg.get('type') == 'Pretrained'):
            raise ValueError(
                'FrozenTeacher needs pretrained weights: give the teacher '
                "model init_cfg=dict(type='Pretrained', checkpoint=...), or "
                'use a weight-free target (HOGTarget, PixelTarget).')
        checkpoint = init_cfg.get('checkpoint') if isinstance(
            init_cfg, dict) else None
        if isinstance(checkpoint, str) and '://' not in checkpoint and \
                not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'FrozenTeacher: the teacher checkpoint {checkpoint} does not '
                'exist. Put the teacher weights there (nothing is downloaded '
                'automatically) or use a weight-free target (HOGTarget).')
        self.model = build_scoped(MODELS, model)
        if hasattr(self.model, 'init_weights'):
            self.model.init_weights()
        self.model.requires_grad_(False)
        self.model.eval()
        self.norm = PixelNorm(mean, std)
        self.out_dims = out_dims
        self.num_extra_tokens = num_extra_tokens

    def train(self, mode: bool = True) -> 'FrozenTeacher':
        """The teacher stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` raw pixels to ``(B, N, out_dims)`` features."""
        check_raw_pixels(images, 'FrozenTeacher')
        features = _patch_tokens(
            self.model(self.norm(images)), self.num_extra_tokens)
        if features.shape[-1] != self.out_dims:
            raise ValueError(f'The teacher returned {features.shape[-1]}-d '
                             f'features but out_dims={self.out_dims}.')
        return features


class _PatchHOG(HOGGenerator):
    """mmpretrain's HOG generator, regrouped per patch of any grid.

    mmpretrain's own reshape assumes a 14x14 patch grid; this one reads the
    grid from the input.
    """

    def __init__(self, patch_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.patch_size = patch_size

    def _reshape(self, hog_feat: torch.Tensor) -> torch.Tensor:
        cells = self.patch_size // self.pool
        hog_feat = hog_feat.flatten(1, 2).permute(0, 2, 3, 1)  # B h w C
        hog_feat = hog_feat.unfold(1, cells, cells).unfold(2, cells, cells)
        return hog_feat.flatten(1, 2).flatten(2)


@MODELS.register_module()
class HOGTarget(BaseModule):
    """HOG features of each patch (MaskFeat), per RGB channel.

    Pixels are scaled to [0, 1] first. The feature of a patch concatenates
    the ``nbins``-bin histograms of its ``(patch_size / pool)^2`` cells for
    the three channels.

    Args:
        patch_size (int): The tokenizer's patch size; a multiple of ``pool``.
        nbins (int): Orientation bins.
        pool (int): Cell size in pixels.
        gaussian_window (int): Gaussian weighting window (0 to disable); the
            image side must be a multiple of it.
    """

    def __init__(self,
                 patch_size: int = 16,
                 nbins: int = 9,
                 pool: int = 8,
                 gaussian_window: int = 16) -> None:
        super().__init__()
        if patch_size % pool:
            raise ValueError(f'HOGTarget: patch_size {patch_size} must be a '
                             f'multiple of pool {pool}.')
        self.hog = _PatchHOG(
            patch_size, nbins=nbins, pool=pool,
            gaussian_window=gaussian_window)
        self.out_dims = 3 * nbins * (patch_size // pool)**2

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` raw pixels to ``(B, N, out_dims)`` HOG features."""
        check_raw_pixels(images, 'HOGTarget')
        window = self.hog.gaussian_window
        if window and images.shape[-1] % window:
            raise ValueError(f'HOGTarget: image size {images.shape[-1]} is '
                             f'not a multiple of gaussian_window {window}.')
        return self.hog(images.float() / 255.)


@MODELS.register_module()
class PixelTarget(BaseModule):
    """Pixels of each patch, normalised per patch (MAE's target).

    Args:
        patch_size (int): The tokenizer's patch size.
        eps (float): Added to the per-patch variance.
    """

    def __init__(self, patch_size: int = 16, eps: float = 1e-6) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.eps = eps
        self.out_dims = 3 * patch_size**2

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` raw pixels to ``(B, N, 3 * p * p)``."""
        check_raw_pixels(images, 'PixelTarget')
        p = self.patch_size
        patches = F.unfold(images.float() / 255., kernel_size=p, stride=p)
        patches = patches.transpose(1, 2)
        mean = patches.mean(-1, keepdim=True)
        var = patches.var(-1, keepdim=True)
        return (patches - mean) / (var + self.eps).sqrt()


@MODELS.register_module()
class ColorHistogramTarget(BaseModule):
    """Per-patch histogram of quantized RGB colours.

    Each channel is cut into ``bins`` equal ranges; the target of a patch is
    the share of its pixels in each of the ``bins**3`` colour cells. Needs
    no weights; a VQ-KD taught with it learns colour tokens (what the
    synthetic demo's captions talk about).

    Plain shares make coverage as important as colour: a patch that a red
    shape covers by 10% and one it covers by 90% are as far apart as red and
    blue, so a small codebook spends its codes on coverage. Two options
    make the target name the colour that stands out instead:

    * ``rarity``: weight each pixel by the inverse share of its colour cell
      in the whole image, so the few pixels of a shape outweigh the
      background they sit on;
    * ``hard``: keep only the heaviest cell of each patch (a one-hot
      target).

    Args:
        patch_size (int): The tokenizer's patch size.
        bins (int): Levels per channel.
        rarity (bool): Weight pixels by the rarity of their colour in the
            image. Defaults to False.
        hard (bool): One-hot of each patch's heaviest cell. Defaults to
            False.
    """

    def __init__(self, patch_size: int = 16, bins: int = 6,
                 rarity: bool = False, hard: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.bins = bins
        self.rarity = rarity
        self.hard = hard
        self.out_dims = bins**3

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` raw pixels to ``(B, N, bins**3)`` histograms."""
        check_raw_pixels(images, 'ColorHistogramTarget')
        levels = (images.float() * self.bins / 256.).long().clamp(
            0, self.bins - 1)
        cell = (levels[:, 0] * self.bins + levels[:, 1]) * self.bins + \
            levels[:, 2]  # (B, H, W)
        batch, height, width = cell.shape
        p, cells = self.patch_size, self.out_dims
        h, w = height // p, width // p
        # Pixel counts per (image, patch, colour cell) with one bincount
        # (a one-hot of every pixel would hold B*H*W*bins**3 numbers).
        patch = (torch.arange(h, device=cell.device)[:, None] * w +
                 torch.arange(w, device=cell.device)).repeat_interleave(
                     p, 0).repeat_interleave(p, 1)  # (h*p, w*p)
        image = torch.arange(batch, device=cell.device)[:, None, None]
        index = (image * (h * w) + patch) * cells + cell[:, :h * p, :w * p]
        pooled = torch.bincount(index.flatten(), minlength=batch * h * w *
                                cells).view(batch, h * w, cells).float()
        pooled = pooled / (p * p)  # (B, N, K) shares
        if self.rarity:  # shares over the whole image
            image_share = torch.bincount(
                (image * cells + cell).flatten(),
                minlength=batch * cells).view(batch, 1, cells).float()
            image_share = image_share / (height * width)
            pooled = pooled / image_share.clamp_min(1e-6)
            pooled = pooled / pooled.sum(-1, keepdim=True)
        if self.hard:
            pooled = F.one_hot(pooled.argmax(-1), cells).float()
        return pooled
