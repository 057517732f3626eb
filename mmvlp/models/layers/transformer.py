"""The pre-LN Multiway Transformer layer shared by every model in mmvlp."""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn.bricks.drop import DropPath

from .attention import MultiwayAttention
from .ffn import SubLNFFN
from .multiway import expert_of, multiway_or_shared, route, split_modalities
from .rope import RopeTables


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
        qkv_bias (bool): Bias on the query/key/value projection.
        ffn_act (str): Activation of the FFN (see
            :class:`~mmvlp.models.layers.SubLNFFN`; ``'swiglu'`` makes it a
            SwiGLU FFN).
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
                 window_size: int = 0,
                 qkv_bias: bool = True,
                 ffn_act: str = 'gelu') -> None:
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
            qkv_bias=qkv_bias,
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
                layer_norm_eps=layer_norm_eps,
                act=ffn_act), multiway_ffn, vl_expert)
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self,
                x: torch.Tensor,
                split: int,
                attn_mask: Optional[torch.Tensor] = None,
                grid: Optional[Sequence[int]] = None,
                rope: Optional[RopeTables] = None) -> torch.Tensor:
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
            rope (tuple, optional): Rotary ``(cos, sin)`` tables of the
                trailing patch tokens of a one-modality sequence (see
                :mod:`~mmvlp.models.layers.rope`).

        Returns:
            Tensor: ``(B, N, C)``.
        """
        parts = split_modalities(x, split)
        if len(parts) > 1:
            if rope is not None:
                raise ValueError('Rotary embeddings are supported for '
                                 'one-modality sequences only.')
            return self._forward_mixed(parts, attn_mask)
        x = x + self.drop_path(
            self.attn(route(self.norm1, x, split), split, attn_mask, grid,
                      rope))
        hidden = route(self.norm2, x, split)
        return x + self.drop_path(route(self.ffn, hidden, split))

    def _forward_mixed(self, parts, attn_mask: Optional[torch.Tensor]
                       ) -> torch.Tensor:
        """:meth:`forward` of an image+text sequence, cut once.

        The image and text parts go through their experts separately from
        the first norm to the FFN (every module but attention works per
        token) and are joined once at the end, instead of every expert
        module cutting and joining the whole sequence. A mixed sequence uses
        the vision-language FFN expert where the layer has one.
        """
        hidden = [(kind, expert_of(self.norm1, kind)(part))
                  for kind, part in parts]
        attn = self.attn.forward_parts(hidden, attn_mask)
        keep = self._drop_path_scale(parts[0][1])
        parts = [(kind, part + _scaled(out, keep))
                 for (kind, part), out in zip(parts, attn)]
        keep = self._drop_path_scale(parts[0][1])
        outs = []
        for kind, part in parts:
            hidden = expert_of(self.norm2, kind, fuse=True)(part)
            out = expert_of(self.ffn, kind, fuse=True)(hidden)
            outs.append(part + _scaled(out, keep))
        return torch.cat(outs, dim=1)

    def _drop_path_scale(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """Per-sample ``(B, 1, 1)`` stochastic-depth factors (0 or
        ``1 / keep``), one draw shared by all parts of a sequence; None when
        nothing is dropped."""
        rate = getattr(self.drop_path, 'drop_prob', 0.)
        if not self.training or rate <= 0:
            return None
        keep = 1 - rate
        return x.new_empty(x.shape[0], 1, 1).bernoulli_(keep).div_(keep)

    def forward_cached(
        self,
        x: torch.Tensor,
        split: int,
        store: Callable[[torch.Tensor, torch.Tensor],
                        Tuple[torch.Tensor, torch.Tensor]],
        attn_mask: Optional[torch.Tensor] = None,
        fuse: bool = False
    ) -> torch.Tensor:
        """Run the layer on new tokens against cached keys/values
        (incremental decoding); the same computation as :meth:`forward` on
        the whole sequence, for these tokens.

        Args:
            x (Tensor): ``(B, n, C)`` new tokens, image tokens first.
            split (int): Number of leading image tokens in ``x``.
            store (callable): Stores the new keys/values and returns those
                of all tokens (see :meth:`MultiwayAttention.forward_cached`).
            attn_mask (Tensor, optional): SDPA mask over ``(n, T + n)``.
            fuse (bool): Whether the whole sequence (cache and ``x``) mixes
                images and text, which sends every token through the
                vision-language FFN expert where the layer has one.

        Returns:
            Tensor: ``(B, n, C)``.
        """
        attn_out = self.attn.forward_cached(
            route(self.norm1, x, split), split, store, attn_mask)
        x = x + self.drop_path(attn_out)
        outs = []
        for kind, part in split_modalities(x, split):
            hidden = expert_of(self.norm2, kind, fuse)(part)
            outs.append(part + self.drop_path(
                expert_of(self.ffn, kind, fuse)(hidden)))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


def _scaled(x: torch.Tensor, factor: Optional[torch.Tensor]) -> torch.Tensor:
    return x if factor is None else x * factor
