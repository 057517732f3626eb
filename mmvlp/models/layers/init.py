"""Weight initialisation shared by the transformers."""
import torch.nn as nn


def init_transformer_weights(module: nn.Module, std: float = .02) -> None:
    """``trunc_normal(std)`` for linear and conv weights with zero biases,
    ones/zeros for LayerNorms, over all submodules of ``module``.

    Args:
        module (nn.Module): The model to initialise in place.
        std (float): Standard deviation of the truncated normal.
    """
    for child in module.modules():
        if isinstance(child, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(child.weight, std=std)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.LayerNorm):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)
