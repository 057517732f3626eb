"""Heads of the vision-language fine-tuning tasks (VQA, NLVR2), with the
official BEiT-3 parameter names."""
import torch
import torch.nn as nn

from mmvlp.registry import MODELS


def init_head_weights(module: nn.Module, scale: float = 1.) -> None:
    """The official heads' init: Linear weights truncated normal (std
    0.02) and zero bias, LayerNorms ones / zeros; Linear weights and biases
    then multiplied by ``scale``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if scale != 1.:
                with torch.no_grad():
                    m.weight.mul_(scale)
                    if m.bias is not None:
                        m.bias.mul_(scale)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@MODELS.register_module()
class Pooler(nn.Module):
    """First token -> LayerNorm -> Linear -> tanh (BEiT-3's VQA pooler;
    keys ``norm``, ``dense``).

    Args:
        in_dims (int): Token width.
        out_dims (int, optional): Output width (default ``in_dims``).
        layer_norm_eps (float): LayerNorm epsilon.
    """

    def __init__(self, in_dims: int, out_dims: int = None,
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dims, eps=layer_norm_eps)
        self.dense = nn.Linear(in_dims, out_dims or in_dims)
        init_head_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` tokens -> ``(B, out_dims)`` from the first."""
        return torch.tanh(self.dense(self.norm(tokens[:, 0])))


@MODELS.register_module()
class VQAHead(nn.Sequential):
    """Linear(C, 2C) -> LayerNorm -> GELU -> Linear(2C, answers), BEiT-3's
    VQA classifier (keys ``0``, ``1``, ``3`` as the official ``head``).

    Args:
        in_dims (int): Input width.
        num_classes (int): Answers (3129 for VQAv2).
        layer_norm_eps (float): LayerNorm epsilon.
    """

    def __init__(self, in_dims: int, num_classes: int,
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__(
            nn.Linear(in_dims, in_dims * 2),
            nn.LayerNorm(in_dims * 2, eps=layer_norm_eps), nn.GELU(),
            nn.Linear(in_dims * 2, num_classes))
        init_head_weights(self)


@MODELS.register_module()
class TwoLayerMLPHead(nn.Module):
    """LayerNorm -> Linear -> LayerNorm -> GELU -> Linear, BEiT-3's NLVR2
    head (keys ``norm1``, ``dense1``, ``norm2``, ``dense2``; Linear layers
    initialised x ``init_scale``).

    Args:
        in_dims (int): Input width (4C for NLVR2).
        hidden_dims (int): Hidden width (2C).
        num_classes (int): Outputs.
        init_scale (float): Factor on the initial Linear weights and biases
            (0.001 in the official code).
        layer_norm_eps (float): LayerNorm epsilon.
    """

    def __init__(self, in_dims: int, hidden_dims: int, num_classes: int,
                 init_scale: float = 1e-3,
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dims, eps=layer_norm_eps)
        self.dense1 = nn.Linear(in_dims, hidden_dims)
        self.norm2 = nn.LayerNorm(hidden_dims, eps=layer_norm_eps)
        self.act = nn.GELU()
        self.dense2 = nn.Linear(hidden_dims, num_classes)
        init_head_weights(self, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.act(self.norm2(self.dense1(self.norm1(x)))))


__all__ = ['Pooler', 'VQAHead', 'TwoLayerMLPHead', 'init_head_weights']
