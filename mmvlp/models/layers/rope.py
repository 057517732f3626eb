"""2-D rotary position embedding of patch tokens (EVA / QLIP style).

Each attention head's ``d`` dims are cut in two halves: the first half is
rotated by the patch's row, the second by its column. Inside a half, the
dims are taken in adjacent pairs ``(2k, 2k + 1)`` and pair ``k`` turns by
the angle ``t * theta ** (-4k / d)``, where ``t`` is the row (or column)
index rescaled to a reference grid: ``t = i * ref_grid / h``. This is the
layout of QLIP's released models (``ref_grid`` 16, ``theta`` 10000, every
grid scaled to 16 positions), computed here for any grid so that a model
runs at other input sizes too.

The cos/sin tables depend only on the grid and the head width, so a model
computes them once per forward and hands the same pair to every layer
(see :class:`~mmvlp.models.backbones.ViTEncoder`).
"""
from typing import Sequence, Tuple

import torch

RopeTables = Tuple[torch.Tensor, torch.Tensor]


def check_rope_head_dims(head_dims: int) -> None:
    """Raise ``ValueError`` unless ``head_dims`` is a multiple of 4 (two
    halves of adjacent pairs)."""
    if head_dims % 4:
        raise ValueError(
            f'2-D rotary embeddings need a head width divisible by 4 (two '
            f'halves of rotated pairs), got {head_dims}; change embed_dims '
            'or num_heads.')


def rope_2d_tables(grid: Sequence[int],
                   head_dims: int,
                   ref_grid: int = 16,
                   theta: float = 10000.,
                   device=None) -> RopeTables:
    """cos and sin of the rotation angles of an ``(h, w)`` patch grid.

    Args:
        grid (Sequence[int]): ``(h, w)``; patches are numbered row-major.
        head_dims (int): Width of one attention head (a multiple of 4).
        ref_grid (int): Number of positions the grid is rescaled to.
        theta (float): Base of the frequencies.
        device: Device of the tables.

    Returns:
        tuple: ``(cos, sin)``, each ``(h * w, head_dims)`` float32.
    """
    check_rope_head_dims(head_dims)
    height, width = (int(s) for s in grid)
    half = head_dims // 2
    exponents = torch.arange(0, half, 2, device=device, dtype=torch.float32)
    inv_freq = theta ** (-exponents / half)  # half // 2 frequencies

    def axis_angles(size: int) -> torch.Tensor:
        positions = torch.arange(size, device=device,
                                 dtype=torch.float32) * (ref_grid / size)
        angles = positions[:, None] * inv_freq[None, :]
        return angles.repeat_interleave(2, dim=-1)  # (size, half)

    rows = axis_angles(height)[:, None, :].expand(height, width, half)
    cols = axis_angles(width)[None, :, :].expand(height, width, half)
    angles = torch.cat([rows, cols], dim=-1).reshape(height * width,
                                                     head_dims)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate the trailing patch tokens of per-head features.

    Args:
        x (Tensor): ``(B, H, N, d)`` queries or keys whose last ``n`` tokens
            are the patches of the tables (``n = tables[0].shape[0]``); the
            tokens before them (e.g. CLS) are left as they are.
        tables (tuple): ``(cos, sin)`` from :func:`rope_2d_tables`.

    Returns:
        Tensor: Same shape and dtype as ``x``.
    """
    cos, sin = tables
    num_rotated = cos.shape[0]
    lead = x.shape[-2] - num_rotated
    if lead < 0 or cos.shape[-1] != x.shape[-1]:
        raise ValueError(
            f'Rotary tables for {num_rotated} tokens of width '
            f'{cos.shape[-1]} do not fit features of shape '
            f'{tuple(x.shape)}.')
    patches = x[..., lead:, :]
    pairs = patches.unflatten(-1, (-1, 2))
    turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    rotated = (patches * cos.to(x.dtype) + turned * sin.to(x.dtype))
    if lead == 0:
        return rotated
    return torch.cat([x[..., :lead, :], rotated], dim=-2)
