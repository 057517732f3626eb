"""Image-text contrastive loss with negatives gathered across ranks."""
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mmvlp.utils.dist import all_gather_rows, all_gather_sizes, dist_info


class _GatherWithGrad(torch.autograd.Function):
    """All-gather the rows of every rank; the backward pass sums the
    gradients that every rank's loss sends to each row and returns this
    rank's rows, so local rows receive the gradient of the sum of all
    ranks' losses (the official BEiT-3 ``GatherLayer``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: List[int],
                rank: int) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat(all_gather_rows(x, sizes))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(x: torch.Tensor,
                     sizes: Optional[List[int]] = None
                     ) -> Tuple[torch.Tensor, int]:
    """Concatenate the rows ``x`` of every rank (in rank order), keeping
    the gradient path to this rank's rows; ranks may hold different numbers
    of rows.

    Args:
        x (Tensor): ``(n, ...)`` rows of this rank.
        sizes (list[int], optional): Every rank's ``n`` when known (saves
            gathering them, a host sync); gathered otherwise.

    Returns:
        tuple: The ``(N, ...)`` rows of all ranks and the offset of this
        rank's rows among them (``x`` itself and 0 without a process group
        or with one process).
    """
    rank, world = dist_info()
    if world == 1:
        return x, 0
    if sizes is None:
        sizes = all_gather_sizes(x)
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
        # Images and texts pair up row by row: one gather of the sizes.
        sizes = all_gather_sizes(image_embeds)
        all_images, offset = gather_with_grad(image_embeds, sizes)
        all_texts, _ = gather_with_grad(text_embeds, sizes)
    scale = logit_scale.exp()
    logits_per_image = scale * image_embeds @ all_texts.t()
    logits_per_text = scale * text_embeds @ all_images.t()
    labels = torch.arange(image_embeds.shape[0],
                          device=image_embeds.device) + offset
    return (F.cross_entropy(logits_per_image.float(), labels) +
            F.cross_entropy(logits_per_text.float(), labels)) / 2


__all__ = ['gather_with_grad', 'contrastive_loss']
