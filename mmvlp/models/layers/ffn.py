"""Feed-forward network with the Sub-LN LayerNorm between its two layers."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SubLNFFN(nn.Module):
    """``fc1 -> GELU -> [LayerNorm] -> fc2`` (Sub-LN FFN of MAGNETO/BEiT-3).

    Args:
        embed_dims (int): Input and output width.
        feedforward_channels (int): Hidden width.
        subln (bool): Insert the LayerNorm after the activation.
        layer_norm_eps (float): Epsilon of the LayerNorm.
        drop (float): Dropout after the activation and after ``fc2``.
    """

    def __init__(self,
                 embed_dims: int,
                 feedforward_channels: int,
                 subln: bool = True,
                 layer_norm_eps: float = 1e-5,
                 drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.norm = nn.LayerNorm(
            feedforward_channels, eps=layer_norm_eps) if subln else None
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(..., C)`` to ``(..., C)``."""
        x = self.drop(F.gelu(self.fc1(x)))
        if self.norm is not None:
            x = self.norm(x)
        return self.drop(self.fc2(x))
