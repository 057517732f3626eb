"""Collectives over tensors whose first dimension differs between ranks.

``torch.distributed.all_gather`` (and mmengine's ``all_gather``) need the
same shape on every rank; gloo aborts otherwise ("Received data size
doesn't match expected size ... Is there a distributed collective
mismatch"), NCCL may hang or read garbage. Test sets rarely split evenly:
COCO's Karpathy test split has 25,010 captions for 5,000 images, so the
ranks of a retrieval evaluation always hold different numbers of captions.
"""
from typing import List, Tuple

import torch
import torch.distributed as dist

__all__ = ['dist_info', 'all_gather_sizes', 'all_gather_rows']


def dist_info() -> Tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_sizes(x: torch.Tensor) -> List[int]:
    """The first-dimension size of ``x`` on every rank, in rank order."""
    _, world = dist_info()
    if world == 1:
        return [x.shape[0]]
    size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    # One host read of the gathered sizes, not one per rank.
    return torch.cat(sizes).tolist()


def all_gather_rows(x: torch.Tensor,
                    sizes: List[int] = None) -> List[torch.Tensor]:
    """The rows of ``x`` of every rank, in rank order: each rank pads its
    rows to the largest count, gathers, and the padding is cut off.

    Args:
        x (Tensor): ``(n, ...)`` rows of this rank; the trailing dimensions
            and the dtype must agree across ranks.
        sizes (list[int], optional): Every rank's ``n`` when known
            (:func:`all_gather_sizes`); gathered otherwise.

    Returns:
        list[Tensor]: One ``(n_r, ...)`` tensor per rank (``[x]`` without a
        process group or with one process).
    """
    _, world = dist_info()
    if world == 1:
        return [x]
    if sizes is None:
        sizes = all_gather_sizes(x)
    padded = x.new_zeros((max(sizes), ) + tuple(x.shape[1:]))
    padded[:x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return [part[:n] for part, n in zip(parts, sizes)]
