"""A plain pre-LN Vision Transformer built from mmvlp's shared layers.

Used where a single-modality encoder or decoder is needed (the visual
tokenizers' encoders and decoders). Its blocks are
:class:`~mmvlp.models.layers.MultiwayTransformerLayer` without experts and
without Sub-LN, i.e. the BEiT v2 / ViT block.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple

from mmvlp.registry import MODELS
from ..layers import (MultiwayTransformerLayer, PatchEmbed, grid_of,
                      init_transformer_weights, resize_pos_embed,
                      resolve_arch)

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
        final_norm (bool): LayerNorm after the last block.
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
                 final_norm: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        settings = resolve_arch(arch, VIT_ARCHS, 'ViTEncoder')
        self.embed_dims = settings['embed_dims']
        self.num_layers = settings['num_layers']
        self.img_size = to_2tuple(img_size)
        self.patch_size = patch_size
        self.patch_grid = grid_of(self.img_size, patch_size)
        self.num_extra_tokens = 1 if with_cls_token else 0
        dims = self.embed_dims

        self.patch_embed = PatchEmbed(patch_size, in_channels, dims)
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
                subln=False,
                drop_path_rate=dpr[i],
                layer_norm_eps=layer_norm_eps)
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

    def forward(self,
                images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Encode ``(B, C, H, W)`` inputs.

        Returns:
            tuple: Tokens ``(B, [1 +] h*w, C)`` (CLS first when present) after
            the final norm, and the patch grid ``(h, w)``.
        """
        x, grid = self.patch_embed(images)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x],
                          dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.patch_grid, grid,
                                 self.num_extra_tokens)
        num_tokens = x.shape[1]
        for layer in self.layers:
            x = layer(x, num_tokens)
        if self.norm is not None:
            x = self.norm(x)
        return x, grid
