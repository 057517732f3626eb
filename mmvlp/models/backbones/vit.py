"""A plain pre-LN Vision Transformer built from mmvlp's shared layers.

Used where a single-modality encoder or decoder is needed (the visual
tokenizers' encoders and decoders). Its blocks are
:class:`~mmvlp.models.layers.MultiwayTransformerLayer` without experts; by
default without Sub-LN, i.e. the BEiT v2 / ViT block. The EVA-style options
of QLIP's released models (Sub-LN, SwiGLU FFN, 2-D rotary positions, a
LayerNorm on the CLS output only, a decoder fed with tokens instead of
pixels) are arguments of the same class.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple

from mmvlp.registry import MODELS
from ..layers import (MultiwayTransformerLayer, PatchEmbed, grid_of,
                      init_transformer_weights, resize_pos_embed,
                      resolve_arch, rope_2d_tables)
from ..layers.rope import RopeTables, check_rope_head_dims

FINAL_NORMS = (True, False, 'cls')

VIT_ARCHS = {
    'tiny': dict(embed_dims=192, num_layers=12, num_heads=3,
                 feedforward_channels=768),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6,
                  feedforward_channels=1536),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12,
                 feedforward_channels=3072),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16,
                  feedforward_channels=4096),
}


@MODELS.register_module()
class ViTEncoder(BaseModule):
    """Patch embedding + CLS + absolute positions + pre-LN blocks + final LN.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` or
            a dict with ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels``.
        img_size (int | tuple): Input size (for a decoder fed with a code map,
            the map size).
        patch_size (int): Patch side (1 for code maps).
        in_channels (int): Input channels.
        layer_norm_eps (float): LayerNorm epsilon (1e-6 as BEiT v2).
        drop_path_rate (float): Stochastic depth, linearly increasing.
        with_cls_token (bool): Prepend a CLS token.
        final_norm (bool | str): LayerNorm after the last block on all
            tokens (True), on the CLS token only (``'cls'``, QLIP's
            ``post_layernorm``: patch tokens leave unnormalised) or none.
        subln (bool): Sub-LN norms inside attention and FFN (EVA-02).
        ffn_act (str): FFN activation: ``'gelu'``, ``'quick_gelu'``,
            ``'gelu_tanh'`` or ``'swiglu'`` (SwiGLU FFN).
        qkv_bias (bool): Bias on the query/key/value projection.
        rope (bool): 2-D rotary position embedding of the patch tokens
            (tokens after the CLS token) in every block, on top of the
            absolute positions; the tables are computed once per forward
            for the input's grid and shared by all blocks (see
            :mod:`~mmvlp.models.layers.rope`).
        rope_ref_grid (int): Grid size the rotary positions are rescaled to
            (16 in QLIP).
        rope_theta (float): Base of the rotary frequencies.
        embed_input (bool): Embed the input with a patch projection (True)
            or read a ``(B, C, h, w)`` map whose ``C == embed_dims``
            channels are already the tokens (QLIP's pixel decoder; needs
            ``patch_size=1``).
        init_cfg (dict | list, optional): mmengine init config.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 layer_norm_eps: float = 1e-6,
                 drop_path_rate: float = 0.,
                 with_cls_token: bool = True,
                 final_norm: Union[bool, str] = True,
                 subln: bool = False,
                 ffn_act: str = 'gelu',
                 qkv_bias: bool = True,
                 rope: bool = False,
                 rope_ref_grid: int = 16,
                 rope_theta: float = 10000.,
                 embed_input: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        settings = resolve_arch(arch, VIT_ARCHS, 'ViTEncoder')
        if final_norm not in FINAL_NORMS:
            raise ValueError(f'final_norm must be True, False or \'cls\', got '
                             f'{final_norm!r}.')
        if final_norm == 'cls' and not with_cls_token:
            raise ValueError("final_norm='cls' needs with_cls_token=True.")
        if rope:
            check_rope_head_dims(settings['embed_dims'] //
                                 settings['num_heads'])
        if not embed_input and (patch_size != 1 or
                                in_channels != settings['embed_dims']):
            raise ValueError(
                'embed_input=False reads the input channels as tokens: it '
                f'needs patch_size=1 and in_channels == embed_dims '
                f'({settings["embed_dims"]}), got patch_size={patch_size}, '
                f'in_channels={in_channels}.')
        self.embed_dims = settings['embed_dims']
        self.num_layers = settings['num_layers']
        self.img_size = to_2tuple(img_size)
        self.patch_size = patch_size
        self.patch_grid = grid_of(self.img_size, patch_size)
        self.num_extra_tokens = 1 if with_cls_token else 0
        self.final_norm = final_norm
        self.head_dims = self.embed_dims // settings['num_heads']
        self.rope = rope
        self.rope_ref_grid = rope_ref_grid
        self.rope_theta = rope_theta
        dims = self.embed_dims

        self.patch_embed = PatchEmbed(
            patch_size, in_channels, dims) if embed_input else None
        self.cls_token = nn.Parameter(torch.zeros(
            1, 1, dims)) if with_cls_token else None
        num_patches = self.patch_grid[0] * self.patch_grid[1]
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_extra_tokens + num_patches, dims))
        dpr = [drop_path_rate * i / max(1, self.num_layers - 1)
               for i in range(self.num_layers)]
        self.layers = nn.ModuleList([
            MultiwayTransformerLayer(
                dims,
                settings['num_heads'],
                settings['feedforward_channels'],
                multiway_attn=False,
                multiway_ffn=False,
                subln=subln,
                drop_path_rate=dpr[i],
                layer_norm_eps=layer_norm_eps,
                qkv_bias=qkv_bias,
                ffn_act=ffn_act)
            for i in range(self.num_layers)
        ])
        self.norm = nn.LayerNorm(
            dims, eps=layer_norm_eps) if final_norm else None
        self._init_from_scratch()

    def _init_from_scratch(self) -> None:
        init_transformer_weights(self)
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=.02)

    def rope_tables(self, grid: Sequence[int],
                    device=None) -> Optional[RopeTables]:
        """Rotary ``(cos, sin)`` tables of a patch grid (None without
        ``rope``)."""
        if not self.rope:
            return None
        return rope_2d_tables(grid, self.head_dims, self.rope_ref_grid,
                              self.rope_theta, device=device)

    def forward(self,
                images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Encode ``(B, C, H, W)`` inputs.

        Returns:
            tuple: Tokens ``(B, [1 +] h*w, C)`` (CLS first when present) after
            the final norm, and the patch grid ``(h, w)``.
        """
        if self.patch_embed is not None:
            x, grid = self.patch_embed(images)
        else:
            grid = (images.shape[2], images.shape[3])
            x = images.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x],
                          dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.patch_grid, grid,
                                 self.num_extra_tokens)
        num_tokens = x.shape[1]
        rope = self.rope_tables(grid, x.device)
        for layer in self.layers:
            x = layer(x, num_tokens, rope=rope)
        if self.norm is not None:
            if self.final_norm == 'cls':
                x = torch.cat([self.norm(x[:, :1]), x[:, 1:]], dim=1)
            else:
                x = self.norm(x)
        return x, grid
