"""Features of images, texts and image-text pairs from a BEiT-3 backbone.

What users take out of BEiT-3 as vectors (:class:`~mmvlp.apis.
FeatureExtractor`, ``tools/extract_features.py``), all from the final hidden
states of :meth:`~mmvlp.models.BEiT3.forward_sequence` (after the final norm
when the model has one):

========================  =====================================================
``image_cls``             ``(C,)`` the vision CLS token of the image alone
``image_mean``            ``(C,)`` the mean of its patch tokens (CLS excluded;
                          as ``out_type='avg_featmap'``)
``patch_map``             ``(C, h, w)`` the patch tokens on their grid
``text_cls``              ``(C,)`` the ``<s>`` token of the text alone
``text_mean``             ``(C,)`` the mean of its tokens (``<s>`` and ``</s>``
                          included, padding excluded)
``fused_image_cls``       ``(C,)`` the vision CLS of the joint image-text
                          sequence (what the VQA pooler reads)
``fused_text_cls``        ``(C,)`` the ``<s>`` token of the joint sequence
``fused_mean``            ``(C,)`` the mean of every token of the joint
                          sequence (padding excluded)
``image_embed``           ``(D,)`` l2-normalised retrieval embedding (the
                          retrieval heads; only when they were loaded)
``text_embed``            ``(D,)`` the same for texts
========================  =====================================================

With ``return_tokens=True`` the hidden states themselves come too
(``image_tokens``, ``text_tokens``, ``fused_tokens``; padding removed by the
inferencer).
"""
from typing import Dict, Optional

import torch

__all__ = ['image_features', 'text_features', 'pair_features',
           'masked_mean', 'FEATURE_KEYS']

#: Every feature name, by the input it needs.
FEATURE_KEYS = dict(
    image=('image_cls', 'image_mean', 'patch_map', 'image_embed'),
    text=('text_cls', 'text_mean', 'text_embed'),
    pair=('fused_image_cls', 'fused_text_cls', 'fused_mean'))


def masked_mean(tokens: torch.Tensor,
                padding: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean over the tokens ``(B, N, C)`` that are not padding (``(B, N)``,
    True at padding; None: all tokens)."""
    if padding is None:
        return tokens.mean(dim=1)
    keep = (~padding).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)


def image_features(model, images: torch.Tensor, with_embed: bool = False,
                   return_tokens: bool = False) -> Dict[str, torch.Tensor]:
    """Features of images encoded alone.

    Args:
        model: A model with a ``backbone`` (``BEiT3``) and, for
            ``with_embed``, ``image_embedding(hidden)`` (``BEiT3Retrieval``).
        images (Tensor): ``(B, 3, H, W)``, normalised.
        with_embed (bool): Add ``image_embed``.
        return_tokens (bool): Add ``image_tokens`` ``(B, 1 + h*w, C)``.

    Returns:
        dict: Batched features (see the module docstring).
    """
    output, _ = model.backbone.encode(images=images)
    hidden = output.hidden_states
    patches = hidden[:, 1:]
    height, width = output.patch_grid
    feats = dict(
        image_cls=hidden[:, 0],
        image_mean=patches.mean(dim=1),
        patch_map=patches.reshape(hidden.shape[0], height, width,
                                  -1).permute(0, 3, 1, 2))
    if with_embed:
        feats['image_embed'] = model.image_embedding(hidden)
    if return_tokens:
        feats['image_tokens'] = hidden
    return feats


def text_features(model, text_ids: torch.Tensor,
                  text_padding_mask: Optional[torch.Tensor],
                  with_embed: bool = False,
                  return_tokens: bool = False) -> Dict[str, torch.Tensor]:
    """Features of texts encoded alone.

    Args:
        model: See :func:`image_features` (``text_embedding(hidden)`` for
            ``with_embed``).
        text_ids (Tensor): ``(B, L)`` token ids.
        text_padding_mask (Tensor, optional): ``(B, L)``, True at padding.
        with_embed (bool): Add ``text_embed``.
        return_tokens (bool): Add ``text_tokens`` ``(B, L, C)``.

    Returns:
        dict: Batched features.
    """
    hidden = model.backbone.forward_sequence(
        text_ids=text_ids, text_padding_mask=text_padding_mask)
    feats = dict(text_cls=hidden[:, 0],
                 text_mean=masked_mean(hidden, text_padding_mask))
    if with_embed:
        feats['text_embed'] = model.text_embedding(hidden)
    if return_tokens:
        feats['text_tokens'] = hidden
    return feats


def pair_features(model, images: torch.Tensor, text_ids: torch.Tensor,
                  text_padding_mask: Optional[torch.Tensor],
                  return_tokens: bool = False) -> Dict[str, torch.Tensor]:
    """Features of the joint sequence ``[image tokens | text tokens]``.

    Args:
        model: See :func:`image_features`.
        images (Tensor): ``(B, 3, H, W)``.
        text_ids (Tensor): ``(B, L)``.
        text_padding_mask (Tensor, optional): ``(B, L)``, True at padding.
        return_tokens (bool): Add ``fused_tokens`` ``(B, N_img + L, C)``.

    Returns:
        dict: Batched features.
    """
    output, _ = model.backbone.encode(
        images=images, text_ids=text_ids,
        text_padding_mask=text_padding_mask)
    hidden, split = output.hidden_states, output.num_image_tokens
    feats = dict(fused_image_cls=hidden[:, 0],
                 fused_text_cls=hidden[:, split],
                 fused_mean=masked_mean(hidden, output.padding_mask))
    if return_tokens:
        feats['fused_tokens'] = hidden
    return feats
