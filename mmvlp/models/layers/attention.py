"""Multi-head self-attention with optional per-modality projections."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .multiway import multiway_or_shared, route


class MultiwayAttention(nn.Module):
    """Self-attention over a Multiway sequence, computed with SDPA.

    The query/key/value projections are fused into one ``qkv`` linear layer
    (per modality when ``multiway``). All tokens attend to each other in one
    call of :func:`torch.nn.functional.scaled_dot_product_attention`; only the
    projections (and the Sub-LN ``inner_norm`` before the output projection)
    are routed to modality experts.

    Args:
        embed_dims (int): Token width ``C``.
        num_heads (int): Number of attention heads; must divide ``C``.
        multiway (bool): Separate projections and norms for image and text
            tokens (BEiT-3's released "decoupled" layout). Defaults to False.
        subln (bool): Add a LayerNorm before the output projection (Sub-LN,
            MAGNETO). Defaults to True.
        qkv_bias (bool): Bias on the query/key/value projection.
        attn_drop (float): Dropout on attention probabilities.
        layer_norm_eps (float): Epsilon of the LayerNorms.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 multiway: bool = False,
                 subln: bool = True,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads}).')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.attn_drop = attn_drop
        self.qkv = multiway_or_shared(
            lambda: nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias),
            multiway)
        self.inner_norm = multiway_or_shared(
            lambda: nn.LayerNorm(embed_dims, eps=layer_norm_eps),
            multiway) if subln else None
        self.proj = multiway_or_shared(
            lambda: nn.Linear(embed_dims, embed_dims), multiway)

    def forward(self,
                x: torch.Tensor,
                split: int,
                attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attend over ``x``.

        Args:
            x (Tensor): ``(B, N, C)`` tokens, image tokens first.
            split (int): Number of leading image tokens.
            attn_mask (Tensor, optional): Broadcastable to ``(B, H, N, N)``;
                boolean (True = may attend) or additive float, as SDPA takes.

        Returns:
            Tensor: ``(B, N, C)``.
        """
        batch, num_tokens, _ = x.shape
        qkv = route(self.qkv, x, split)
        q, k, v = qkv.view(batch, num_tokens, 3, self.num_heads,
                           self.head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).reshape(batch, num_tokens, self.embed_dims)
        if self.inner_norm is not None:
            out = route(self.inner_norm, out, split)
        return route(self.proj, out, split)
