"""The pre-LN Multiway Transformer layer shared by every model in mmvlp."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn.bricks.drop import DropPath

from .attention import MultiwayAttention
from .ffn import SubLNFFN
from .multiway import multiway_or_shared, route


class MultiwayTransformerLayer(nn.Module):
    """``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``, with experts.

    With ``multiway_attn=False, multiway_ffn=False`` this is a plain pre-LN
    ViT block (used by the tokenizers). BEiT-3's two layouts:

    * decoupled (released checkpoints): ``multiway_attn=True`` — the
      attention projections and both LayerNorms are per modality;
    * shared (paper): ``multiway_attn=False`` — one attention for all tokens,
      per-modality ``norm2`` + FFN experts, plus a vision-language expert when
      ``vl_expert`` (used for a mixed sequence as a whole).

    Args:
        embed_dims (int): Token width.
        num_heads (int): Attention heads.
        feedforward_channels (int): FFN hidden width.
        multiway_attn (bool): Per-modality attention and ``norm1``.
        multiway_ffn (bool): Per-modality ``norm2`` and FFN.
        vl_expert (bool): Add a vision-language FFN expert (needs
            ``multiway_ffn``).
        subln (bool): Sub-LN norms inside attention and FFN.
        drop_path_rate (float): Stochastic depth of both residual branches.
        attn_drop (float): Attention-probability dropout.
        layer_norm_eps (float): Epsilon of all LayerNorms.
        window_size (int): Window side of ViTDet-style window attention for
            image-only sequences (needs ``grid`` in :meth:`forward`); 0
            (default) attends globally.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 multiway_attn: bool = True,
                 multiway_ffn: bool = True,
                 vl_expert: bool = False,
                 subln: bool = True,
                 drop_path_rate: float = 0.,
                 attn_drop: float = 0.,
                 layer_norm_eps: float = 1e-5,
                 window_size: int = 0) -> None:
        super().__init__()
        if vl_expert and not multiway_ffn:
            raise ValueError('vl_expert=True needs multiway_ffn=True.')
        self.norm1 = multiway_or_shared(
            lambda: nn.LayerNorm(embed_dims, eps=layer_norm_eps),
            multiway_attn)
        self.attn = MultiwayAttention(
            embed_dims,
            num_heads,
            multiway=multiway_attn,
            subln=subln,
            attn_drop=attn_drop,
            layer_norm_eps=layer_norm_eps,
            window_size=window_size)
        self.norm2 = multiway_or_shared(
            lambda: nn.LayerNorm(embed_dims, eps=layer_norm_eps),
            multiway_ffn, vl_expert)
        self.ffn = multiway_or_shared(
            lambda: SubLNFFN(
                embed_dims,
                feedforward_channels,
                subln=subln,
                layer_norm_eps=layer_norm_eps), multiway_ffn, vl_expert)
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self,
                x: torch.Tensor,
                split: int,
                attn_mask: Optional[torch.Tensor] = None,
                grid: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Run the layer.

        Args:
            x (Tensor): ``(B, N, C)``, image tokens first.
            split (int): Number of leading image tokens (``N`` for images
                only, ``0`` for text only).
            attn_mask (Tensor, optional): SDPA mask (True = may attend, or an
                additive float mask), broadcastable to ``(B, H, N, N)``.
            grid (Sequence[int], optional): ``(h, w)`` patch grid of an
                image-only sequence, for window attention (see
                :class:`~mmvlp.models.layers.MultiwayAttention`).

        Returns:
            Tensor: ``(B, N, C)``.
        """
        fuse = 0 < split < x.shape[1]
        x = x + self.drop_path(
            self.attn(route(self.norm1, x, split), split, attn_mask, grid))
        hidden = route(self.norm2, x, split, fuse)
        return x + self.drop_path(route(self.ffn, hidden, split, fuse))
