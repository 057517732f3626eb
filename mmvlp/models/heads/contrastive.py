"""Image-text contrastive loss with negatives gathered across ranks."""
from typing import List, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather the rows of every rank; the backward pass sums the
    gradients that every rank's loss sends to each row and returns this
    rank's rows, so local rows receive the gradient of the sum of all
    ranks' losses (the official BEiT-3 ``GatherLayer``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: List[int],
                rank: int) -> torch.Tensor:
        padded = x.new_zeros((max(sizes), ) + x.shape[1:])
        padded[:x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Concatenate the rows ``x`` of every rank (in rank order), keeping
    the gradient path to this rank's rows; ranks may hold different numbers
    of rows.

    Args:
        x (Tensor): ``(n, ...)`` rows of this rank.

    Returns:
        tuple: The ``(N, ...)`` rows of all ranks and the offset of this
        rank's rows among them (``x`` itself and 0 without a process group
        or with one process).
    """
    rank, world = _world()
    if world == 1:
        return x, 0
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    return _GatherWithGrad.apply(x, sizes, rank), sum(sizes[:rank])


def contrastive_loss(image_embeds: torch.Tensor,
                     text_embeds: torch.Tensor,
                     logit_scale: torch.Tensor,
                     gather: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE over l2-normalised image-text pairs.

    Row ``i`` of ``image_embeds`` and of ``text_embeds`` form a pair. With a
    process group (and ``gather``), the negatives are the pairs of every
    rank: each rank scores its own images against all texts and its own
    texts against all images (CLIP / BEiT-3 retrieval), and gradients flow
    back to the rows of the rank that computed them. The mean over ranks of
    this loss equals the loss of the whole global batch in one process.

    Args:
        image_embeds (Tensor): ``(n, D)``, l2-normalised.
        text_embeds (Tensor): ``(n, D)``, l2-normalised.
        logit_scale (Tensor): Log of the inverse temperature.
        gather (bool): Gather negatives across ranks. Defaults to True.

    Returns:
        Tensor: Mean of the image->text and text->image cross-entropies.
    """
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(f'image_embeds {tuple(image_embeds.shape)} and '
                         f'text_embeds {tuple(text_embeds.shape)} must pair '
                         'up row by row.')
    all_images, all_texts, offset = image_embeds, text_embeds, 0
    if gather:
        all_images, offset = gather_with_grad(image_embeds)
        all_texts, _ = gather_with_grad(text_embeds)
    scale = logit_scale.exp()
    logits_per_image = scale * image_embeds @ all_texts.t()
    logits_per_text = scale * text_embeds @ all_images.t()
    labels = torch.arange(image_embeds.shape[0],
                          device=image_embeds.device) + offset
    return (F.cross_entropy(logits_per_image.float(), labels) +
            F.cross_entropy(logits_per_text.float(), labels)) / 2


__all__ = ['gather_with_grad', 'contrastive_loss']
