"""Output type and small helpers shared by the mmvlp quantizers."""
from contextlib import contextmanager
from typing import Dict, Iterator, NamedTuple

import torch
from torch import Tensor


class QuantizerOutput(NamedTuple):
    """What every mmvlp quantizer returns.

    Attributes:
        quantized (Tensor): Same shape as the input ``(..., D)``. Its forward
            value is the selected code; its gradient reaches the (normalised)
            input unchanged (straight-through estimator).
        indices (Tensor): ``int64`` code indices of shape
            ``input.shape[:-1]``.
        loss (Tensor): Scalar, the weighted sum of ``losses``; this is what a
            training algorithm adds to its objective.
        losses (Dict[str, Tensor]): Named, unweighted scalar loss terms.
        stats (Dict[str, Tensor]): Detached usage statistics of the batch, at
            least ``'perplexity'`` and ``'used_codes'``.
    """
    quantized: Tensor
    indices: Tensor
    loss: Tensor
    losses: Dict[str, Tensor]
    stats: Dict[str, Tensor]


def check_last_dim(x: Tensor, expected: int, name: str = 'input') -> None:
    """Raise a ``ValueError`` unless ``x`` is channels-last with width
    ``expected``.

    Args:
        x (Tensor): Tensor of shape ``(..., D)``.
        expected (int): The required size of the last dimension.
        name (str): How to call ``x`` in the error message.
    """
    if x.dim() < 1 or x.shape[-1] != expected:
        raise ValueError(f'{name} must be channels-last with last dimension '
                         f'{expected}, got shape {tuple(x.shape)}')


def straight_through(x: Tensor, code: Tensor) -> Tensor:
    """Forward value ``code``, identity gradient to ``x``.

    Args:
        x (Tensor): The continuous tensor that receives the gradient.
        code (Tensor): The discrete value to output, same shape as ``x``.

    Returns:
        Tensor: ``x + (code - x).detach()``.
    """
    return x + (code - x).detach()


def entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy (nats) of distributions along ``dim``.

    ``0 * log 0`` is taken as 0.

    Args:
        probs (Tensor): Non-negative values summing to one along ``dim``.
        dim (int): The dimension that holds the distribution.

    Returns:
        Tensor: ``probs`` with ``dim`` reduced.
    """
    return -torch.special.xlogy(probs, probs).sum(dim)


def counts_perplexity(counts: Tensor) -> Tensor:
    """``exp`` of the entropy of a histogram of code counts.

    Args:
        counts (Tensor): Non-negative counts of shape ``(K,)``.

    Returns:
        Tensor: Scalar float perplexity, between 1 and the number of non-zero
        bins; 0 for an empty histogram.
    """
    counts = counts.float()
    total = counts.sum()
    perplexity = entropy(counts / total.clamp_min(1)).exp()
    # Without a host sync: an empty histogram gives 0 instead of exp(0) = 1.
    return perplexity * (total > 0)


@contextmanager
def fp32_region(device: torch.device) -> Iterator[None]:
    """Run the enclosed code without autocast on ``device``'s type.

    ``tensor.float()`` alone does not leave an autocast region: the next
    matmul would be cast back to the autocast dtype.

    Args:
        device (torch.device): Device whose autocast is switched off.
    """
    with torch.autocast(device_type=device.type, enabled=False):
        yield
