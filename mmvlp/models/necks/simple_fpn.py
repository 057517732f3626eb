"""ViTDet's simple feature pyramid for plain (single-stride) backbones."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.utils import LayerNorm2d

from mmvlp.registry import MODELS

#: LayerNorm over the channels of ``(B, C, H, W)`` maps (mmpretrain's
#: ``LayerNorm2d``), registered in mmvlp's scope so ``norm_cfg=dict(
#: type='LN2d')`` resolves from mmdet and mmseg configs too.
LN2d = LayerNorm2d
MODELS.register_module('LN2d', module=LN2d)

SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5, 0.25)


def _scoped(cfg: Optional[dict]) -> Optional[dict]:
    """Give an unscoped ``type`` that mmvlp registers (``LN2d``) mmvlp's
    scope, so it resolves under mmdet's or mmseg's default scope too; other
    types (``BN``, ``GN``, ``SyncBN``) resolve as usual."""
    if cfg is None or not isinstance(cfg.get('type'), str) or \
            '.' in cfg['type'] or cfg['type'] not in MODELS.module_dict:
        return cfg
    return dict(cfg, type=f'mmvlp.{cfg["type"]}')


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid (ViTDet, Li et al. 2022) from one feature map.

    The last map of a plain ViT (stride ``s``, e.g. 16) is rescaled by each
    of ``scale_factors``: x4 by two stride-2 transposed convolutions with
    ``LN2d`` + GELU between them (width ``C/2`` then ``C/4``), x2 by one
    (width ``C/2``), x1 as is, x0.5 (x0.25) by 2x2 (4x4) max pooling. Each
    level then goes through a 1x1 convolution and a 3x3 convolution to
    ``out_channels``, each followed by ``norm_cfg`` (``LN2d``: ViTDet's
    design, no activation). ``num_outs`` above the number of scales adds
    levels by stride-2 subsampling of the last one (``P6`` for RPN), as
    ViTDet's ``LastLevelMaxPool``.

    With a patch-16 backbone the default ``scale_factors`` give strides
    4, 8, 16, 32; with patch 8 use ``(2.0, 1.0, 0.5, 0.25)`` for the same
    strides (or keep the defaults for strides 2-16).

    The arguments of mmdet's ``projects/ViTDet`` ``SimpleFPN`` are accepted
    (``backbone_channel``, ``in_channels``, ``out_channels``, ``num_outs``,
    ``conv_cfg``, ``norm_cfg``, ``act_cfg``), so its configs port as they
    are with ``type='mmvlp.SimpleFPN'``.

    Args:
        backbone_channel (int): Width ``C`` of the backbone map.
        out_channels (int): Width of every pyramid level.
        num_outs (int): Number of outputs, at least ``len(scale_factors)``.
        in_channels (Sequence[int], optional): Width of each rescaled map
            (what the 1x1 convolutions see); must match what the rescaling
            produces: ``C/4`` for x4, ``C/2`` for x2, ``C`` otherwise (the
            default).
        scale_factors (Sequence[float]): Rescaling of each level, from
            ``(4, 2, 1, 0.5, 0.25)``; default ``(4, 2, 1, 0.5)``.
        in_index (int): Which backbone output to use. Defaults to -1 (the
            last; ViTDet uses the last layer).
        conv_cfg (dict, optional): Convolution config of the output convs.
        norm_cfg (dict, optional): Norm after the first transposed conv of x4
            and after each output conv. Defaults to ``dict(type='LN2d')``;
            ``'LN2d'`` resolves in mmvlp's scope from any default scope.
        act_cfg (dict, optional): Activation after the output convs.
            Defaults to None (ViTDet).
        init_cfg (dict | list, optional): mmengine init config.
    """

    def __init__(self,
                 backbone_channel: int,
                 out_channels: int = 256,
                 num_outs: int = 5,
                 in_channels: Optional[Sequence[int]] = None,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 in_index: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(
                     type='LN2d', requires_grad=True),
                 act_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        scale_factors = tuple(float(s) for s in scale_factors)
        unknown = [s for s in scale_factors if s not in SCALE_FACTORS]
        if unknown or not scale_factors:
            raise ValueError(f'SimpleFPN scale_factors must be taken from '
                             f'{SCALE_FACTORS}, got {scale_factors}.')
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs ({num_outs}) must be at least the '
                             f'number of scale_factors '
                             f'({len(scale_factors)}).')
        dims = backbone_channel
        if 4.0 in scale_factors and dims % 4 or 2.0 in scale_factors and \
                dims % 2:
            raise ValueError(f'backbone_channel {dims} must be divisible by '
                             'the upsampling factors (C/2, C/4 widths).')
        widths = [{4.0: dims // 4, 2.0: dims // 2}.get(s, dims)
                  for s in scale_factors]
        if in_channels is not None and list(in_channels) != widths:
            raise ValueError(
                f'in_channels {list(in_channels)} does not match what '
                f'scale_factors {scale_factors} make of a {dims}-channel map:'
                f' {widths}.')
        self.backbone_channel = dims
        self.in_channels = widths
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.scale_factors = scale_factors
        self.in_index = in_index
        norm_cfg = _scoped(norm_cfg)

        self.rescales = nn.ModuleList()
        for scale in scale_factors:
            if scale == 4.0:
                stage = nn.Sequential(
                    nn.ConvTranspose2d(dims, dims // 2, 2, stride=2),
                    build_norm_layer(norm_cfg or dict(type='mmvlp.LN2d'),
                                     dims // 2)[1],
                    nn.GELU(),
                    nn.ConvTranspose2d(dims // 2, dims // 4, 2, stride=2))
            elif scale == 2.0:
                stage = nn.ConvTranspose2d(dims, dims // 2, 2, stride=2)
            elif scale == 1.0:
                stage = nn.Identity()
            else:
                kernel = int(round(1 / scale))
                stage = nn.MaxPool2d(kernel_size=kernel, stride=kernel)
            self.rescales.append(stage)

        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for width in widths:
            self.lateral_convs.append(
                ConvModule(width, out_channels, 1, conv_cfg=conv_cfg,
                           norm_cfg=norm_cfg, act_cfg=act_cfg,
                           inplace=False))
            self.fpn_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1,
                           conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                           act_cfg=act_cfg, inplace=False))

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> Tuple[torch.Tensor, ...]:
        """Build the pyramid.

        Args:
            inputs (Tensor | Sequence[Tensor]): The backbone's ``(B, C, h,
                w)`` maps (``out_type='featmap'``); ``inputs[in_index]`` is
                used.

        Returns:
            tuple[Tensor]: ``num_outs`` maps of ``out_channels``, finest
            first.
        """
        x = inputs if isinstance(inputs, torch.Tensor) else \
            inputs[self.in_index]
        if x.dim() != 4 or x.shape[1] != self.backbone_channel:
            raise ValueError(
                f'SimpleFPN expects (B, {self.backbone_channel}, h, w) maps '
                f'(set out_type="featmap" on the backbone), got '
                f'{tuple(x.shape)}.')
        outs = [
            fpn_conv(lateral(rescale(x))) for rescale, lateral, fpn_conv in
            zip(self.rescales, self.lateral_convs, self.fpn_convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
