"""Feed-forward network with the Sub-LN LayerNorm between its two layers."""
import torch
import torch.nn as nn
import torch.nn.functional as F

FFN_ACTS = ('gelu', 'quick_gelu', 'gelu_tanh', 'swiglu')


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class SubLNFFN(nn.Module):
    """``fc1 -> act -> [LayerNorm] -> fc2`` (Sub-LN FFN of MAGNETO/BEiT-3).

    With ``act='swiglu'`` (EVA-02, QLIP) ``fc1`` has ``2 * hidden`` outputs,
    a gate ``g`` and a value ``v`` (in this order), and the activation is
    ``silu(g) * v``.

    Args:
        embed_dims (int): Input and output width.
        feedforward_channels (int): Hidden width.
        subln (bool): Insert the LayerNorm after the activation.
        layer_norm_eps (float): Epsilon of the LayerNorm.
        drop (float): Dropout after the activation and after ``fc2``.
        act (str): ``'gelu'`` (exact, default), ``'quick_gelu'``
            (``x * sigmoid(1.702 x)``, OpenAI CLIP), ``'gelu_tanh'`` (tanh
            approximation) or ``'swiglu'``.
    """

    def __init__(self,
                 embed_dims: int,
                 feedforward_channels: int,
                 subln: bool = True,
                 layer_norm_eps: float = 1e-5,
                 drop: float = 0.,
                 act: str = 'gelu') -> None:
        super().__init__()
        if act not in FFN_ACTS:
            raise ValueError(f'act must be one of {FFN_ACTS}, got {act!r}.')
        self.act = act
        width = 2 * feedforward_channels if act == 'swiglu' else \
            feedforward_channels
        self.fc1 = nn.Linear(embed_dims, width)
        self.norm = nn.LayerNorm(
            feedforward_channels, eps=layer_norm_eps) if subln else None
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        if self.act == 'gelu':
            return F.gelu(x)
        if self.act == 'swiglu':
            gate, value = x.chunk(2, dim=-1)
            return F.silu(gate) * value
        if self.act == 'quick_gelu':
            return _quick_gelu(x)
        return F.gelu(x, approximate='tanh')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(..., C)`` to ``(..., C)``."""
        x = self.drop(self._activate(self.fc1(x)))
        if self.norm is not None:
            x = self.norm(x)
        return self.drop(self.fc2(x))
