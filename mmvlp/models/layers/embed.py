"""Patch embedding and absolute position tables."""
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmengine.utils import to_2tuple


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project each one.

    Args:
        patch_size (int): Side of a square patch.
        in_channels (int): Image channels.
        embed_dims (int): Output width.
    """

    def __init__(self, patch_size: int, in_channels: int,
                 embed_dims: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(
            in_channels, embed_dims, kernel_size=patch_size,
            stride=patch_size)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Embed ``(B, 3, H, W)`` images.

        Images arrive in fp32; they are cast to the projection's dtype
        (bf16 when DeepSpeed holds the model in bf16, which keeps buffers
        such as a tokenizer's pixel statistics in fp32).

        Returns:
            tuple: Tokens ``(B, H/p * W/p, C)`` and the patch grid ``(h, w)``.
        """
        x = self.proj(x.to(self.proj.weight.dtype))
        grid = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), grid


def resize_pos_embed(pos_embed: torch.Tensor,
                     src_grid: Sequence[int],
                     dst_grid: Sequence[int],
                     num_extra_tokens: int = 1,
                     mode: str = 'bicubic') -> torch.Tensor:
    """Resample the patch rows of an absolute position table to a new grid.

    The leading ``num_extra_tokens`` rows (the CLS position) are kept as they
    are; the ``h*w`` patch rows are interpolated as an image.

    Args:
        pos_embed (Tensor): ``(1, num_extra_tokens + h*w, C)``.
        src_grid (Sequence[int]): ``(h, w)`` of ``pos_embed``.
        dst_grid (Sequence[int]): Target ``(h', w')``.
        num_extra_tokens (int): Rows that are not patch positions.
        mode (str): Interpolation mode of :func:`torch.nn.functional.interpolate`.

    Returns:
        Tensor: ``(1, num_extra_tokens + h'*w', C)``.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if src_grid == dst_grid:
        return pos_embed
    expected = num_extra_tokens + src_grid[0] * src_grid[1]
    if pos_embed.dim() != 3 or pos_embed.shape[1] != expected:
        raise ValueError(
            f'Position table of shape {tuple(pos_embed.shape)} does not match '
            f'a {src_grid[0]}x{src_grid[1]} grid with {num_extra_tokens} '
            f'extra token(s) (expected (1, {expected}, C)).')
    extra, patches = pos_embed[:, :num_extra_tokens], pos_embed[:,
                                                                num_extra_tokens:]
    dims = patches.shape[-1]
    patches = patches.reshape(1, *src_grid, dims).permute(0, 3, 1, 2)
    patches = F.interpolate(
        patches.float(), size=dst_grid, mode=mode, align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, -1, dims).to(
        pos_embed.dtype)
    return torch.cat([extra, patches], dim=1)


def grid_of(img_size: Union[int, Sequence[int]],
            patch_size: int) -> Tuple[int, int]:
    """Patch grid ``(h, w)`` of an image size, checking divisibility.

    Args:
        img_size (int | Sequence[int]): ``S`` or ``(H, W)``.
        patch_size (int): Patch side.

    Returns:
        tuple[int, int]: ``(H // patch_size, W // patch_size)``.
    """
    height, width = to_2tuple(img_size)
    if height % patch_size or width % patch_size:
        raise ValueError(
            f'img_size {height}x{width} is not divisible by patch_size '
            f'{patch_size}; use a multiple of {patch_size} '
            f'(e.g. {height // patch_size * patch_size}x'
            f'{width // patch_size * patch_size}).')
    return height // patch_size, width // patch_size
