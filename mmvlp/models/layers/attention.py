"""Multi-head self-attention with optional per-modality projections."""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention_kernels import attention
from .multiway import expert_of, multiway_or_shared, route, split_modalities
from .rope import RopeTables, apply_rope


class MultiwayAttention(nn.Module):
    """Self-attention over a Multiway sequence.

    The query/key/value projections are fused into one ``qkv`` linear layer
    (per modality when ``multiway``). All tokens attend to each other in one
    attention call; only the projections (and the Sub-LN ``inner_norm``
    before the output projection) are routed to modality experts. The
    attention kernel (SDPA, or explicit GEMMs around an fp32 softmax) is
    chosen per device, precision and length by
    :func:`~mmvlp.models.layers.attention_kernels.attention`.

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
        window_size (int): Side of the square windows of ViTDet-style window
            attention for image-only sequences (see :func:`window_sdpa`);
            0 (default) attends globally.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 multiway: bool = False,
                 subln: bool = True,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 layer_norm_eps: float = 1e-5,
                 window_size: int = 0) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads}).')
        if window_size < 0:
            raise ValueError(f'window_size must be >= 0 (0 = global '
                             f'attention), got {window_size}.')
        self.window_size = window_size
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
                attn_mask: Optional[torch.Tensor] = None,
                grid: Optional[Sequence[int]] = None,
                rope: Optional[RopeTables] = None) -> torch.Tensor:
        """Attend over ``x``.

        Args:
            x (Tensor): ``(B, N, C)`` tokens, image tokens first.
            split (int): Number of leading image tokens.
            attn_mask (Tensor, optional): Broadcastable to ``(B, H, N, N)``;
                boolean (True = may attend) or additive float, as SDPA takes.
            grid (Sequence[int], optional): ``(h, w)`` patch grid of an
                image-only sequence whose last ``h * w`` tokens are patches.
                With ``window_size > 0``, an image-only sequence (``split ==
                N``) without ``attn_mask`` attends within windows; anything
                else attends globally.
            rope (tuple, optional): ``(cos, sin)`` rotary tables
                (:func:`~mmvlp.models.layers.rope.rope_2d_tables`) applied to
                the queries and keys of the last ``len(cos)`` tokens of a
                one-modality sequence.

        Returns:
            Tensor: ``(B, N, C)``.
        """
        parts = split_modalities(x, split)
        if len(parts) > 1:
            if rope is not None:
                raise ValueError('Rotary embeddings are supported for '
                                 'one-modality sequences only.')
            return torch.cat(self.forward_parts(parts, attn_mask), dim=1)
        batch, num_tokens, _ = x.shape
        qkv = route(self.qkv, x, split)
        q, k, v = qkv.view(batch, num_tokens, 3, self.num_heads,
                           self.head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        dropout_p = self.attn_drop if self.training else 0.
        if (self.window_size and grid is not None and split >= num_tokens
                and attn_mask is None):
            out = window_sdpa(q, k, v, grid, self.window_size, dropout_p)
        else:
            out = attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(batch, num_tokens, self.embed_dims)
        if self.inner_norm is not None:
            out = route(self.inner_norm, out, split)
        return route(self.proj, out, split)

    def forward_parts(self,
                      parts: Sequence[Tuple[str, torch.Tensor]],
                      attn_mask: Optional[torch.Tensor] = None
                      ) -> List[torch.Tensor]:
        """Attend over a sequence given as its modalities.

        Each part goes through its own expert projections; only the fused
        ``qkv`` is joined (one ``cat``) for attention over all tokens, whose
        output is cut back per part in the copy that the head transpose
        needs anyway. :meth:`forward` on ``cat(parts)`` gives ``cat`` of the
        result.

        Args:
            parts (Sequence[tuple]): ``(kind, (B, n_i, C))`` in sequence
                order, kind ``'vision'`` or ``'text'`` (see
                :func:`~mmvlp.models.layers.multiway.split_modalities`).
            attn_mask (Tensor, optional): As in :meth:`forward`, over all
                ``sum(n_i)`` tokens.

        Returns:
            list[Tensor]: ``(B, n_i, C)`` per part.
        """
        batch = parts[0][1].shape[0]
        sizes = [part.shape[1] for _, part in parts]
        qkv = torch.cat([expert_of(self.qkv, kind)(part)
                         for kind, part in parts], dim=1)
        q, k, v = qkv.view(batch, sum(sizes), 3, self.num_heads,
                           self.head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(
            q, k, v, attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.)
        outs = []
        for (kind, _), part in zip(parts,
                                   out.transpose(1, 2).split(sizes, dim=1)):
            part = part.reshape(batch, part.shape[1], self.embed_dims)
            if self.inner_norm is not None:
                part = expert_of(self.inner_norm, kind)(part)
            outs.append(expert_of(self.proj, kind)(part))
        return outs

    def forward_cached(
        self,
        x: torch.Tensor,
        split: int,
        store: Callable[[torch.Tensor, torch.Tensor],
                        Tuple[torch.Tensor, torch.Tensor]],
        attn_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Attend from new tokens over cached keys/values and their own
        (incremental decoding).

        Args:
            x (Tensor): ``(B, n, C)`` new tokens, image tokens first.
            split (int): Number of leading image tokens in ``x``.
            store (callable): Takes the new tokens' keys and values (each
                ``(B, H, n, d)``), stores them and returns the keys and
                values of all ``T + n`` tokens (e.g. a layer's
                :meth:`~mmvlp.models.backbones.beit3_cache.KVCache.write`).
            attn_mask (Tensor, optional): SDPA mask broadcastable to
                ``(B, H, n, T + n)`` (True = may attend, or additive).

        Returns:
            Tensor: ``(B, n, C)``.
        """
        batch, num_tokens, _ = x.shape
        qkv = route(self.qkv, x, split)
        q, k, v = qkv.view(batch, num_tokens, 3, self.num_heads,
                           self.head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        k, v = store(k, v)
        out = attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(batch, num_tokens, self.embed_dims)
        if self.inner_norm is not None:
            out = route(self.inner_norm, out, split)
        return route(self.proj, out, split)


def window_sdpa(q: torch.Tensor,
                k: torch.Tensor,
                v: torch.Tensor,
                grid: Sequence[int],
                window_size: int,
                dropout_p: float = 0.) -> torch.Tensor:
    """ViTDet-style window attention over a patch grid with leading tokens.

    The last ``h * w`` tokens are patches of an ``(h, w)`` grid; the tokens
    before them (e.g. the CLS token) are "extra" tokens. The grid is padded
    to multiples of ``window_size`` and split into non-overlapping windows.
    A patch attends to the patches of its window and to the extra tokens; an
    extra token attends to every token. Padded positions are masked out as
    keys (ViTDet lets them take part), so when one window covers the whole
    grid the result equals global attention.

    Args:
        q (Tensor): Queries ``(B, H, N, d)``.
        k (Tensor): Keys ``(B, H, N, d)``.
        v (Tensor): Values ``(B, H, N, d)``.
        grid (Sequence[int]): ``(h, w)`` with ``h * w <= N``.
        window_size (int): Window side in patches.
        dropout_p (float): Attention dropout.

    Returns:
        Tensor: ``(B, H, N, d)``, like
        :func:`torch.nn.functional.scaled_dot_product_attention`.
    """
    batch, heads, num_tokens, dims = q.shape
    height, width = grid
    extra = num_tokens - height * width
    if extra < 0:
        raise ValueError(f'A {height}x{width} grid needs at least '
                         f'{height * width} tokens, got {num_tokens}.')
    size = window_size
    pad_h, pad_w = -height % size, -width % size
    rows, cols = (height + pad_h) // size, (width + pad_w) // size
    num_windows = rows * cols

    def to_windows(t: torch.Tensor) -> torch.Tensor:
        t = t[:, :, extra:].reshape(batch, heads, height, width, dims)
        if pad_h or pad_w:
            t = F.pad(t, (0, 0, 0, pad_w, 0, pad_h))
        t = t.view(batch, heads, rows, size, cols, size, dims)
        return t.permute(0, 2, 4, 1, 3, 5, 6).reshape(
            batch * num_windows, heads, size * size, dims)

    q_win, k_win, v_win = to_windows(q), to_windows(k), to_windows(v)
    if extra:
        def with_extra(t: torch.Tensor, t_win: torch.Tensor) -> torch.Tensor:
            lead = t[:, None, :, :extra].expand(batch, num_windows, heads,
                                                extra, dims)
            return torch.cat([lead.reshape(-1, heads, extra, dims), t_win],
                             dim=2)

        k_win, v_win = with_extra(k, k_win), with_extra(v, v_win)
    mask = None
    if pad_h or pad_w:
        valid = q.new_zeros(height + pad_h, width + pad_w, dtype=torch.bool)
        valid[:height, :width] = True
        valid = valid.view(rows, size, cols, size).permute(0, 2, 1, 3)
        valid = valid.reshape(num_windows, size * size)
        valid = F.pad(valid, (extra, 0), value=True)
        # Windows are batch-major: index = b * num_windows + window.
        mask = valid[:, None, None, :].repeat(batch, 1, 1, 1)
    out = attention(
        q_win, k_win, v_win, attn_mask=mask, dropout_p=dropout_p)
    out = out.view(batch, rows, cols, heads, size, size, dims)
    out = out.permute(0, 3, 1, 4, 2, 5, 6).reshape(
        batch, heads, rows * size, cols * size, dims)
    out = out[:, :, :height, :width].reshape(batch, heads, height * width,
                                             dims)
    if not extra:
        return out
    out_extra = attention(
        q[:, :, :extra], k, v, dropout_p=dropout_p)
    return torch.cat([out_extra, out], dim=2)
