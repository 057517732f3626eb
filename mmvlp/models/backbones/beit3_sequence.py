"""Whole-sequence and incremental (cached) forwards of :class:`~.beit3.BEiT3`.

The image-text tasks run the encoder on a joined sequence: retrieval, VQA
and NLVR2 through :meth:`forward_sequence`, captioning also through
:meth:`forward_cached`, which encodes the next text tokens against the keys
and values of the tokens before (:class:`~.beit3_cache.KVCache`). A mixin of
``BEiT3`` (it uses the backbone's embeddings, layers and final norm).
"""
from functools import partial
from typing import Optional, Tuple

import torch

from .beit3_cache import KVCache

__all__ = ['BEiT3SequenceMixin']


class BEiT3SequenceMixin:
    """Sequence forwards of ``BEiT3``; see the module docstring."""

    @staticmethod
    def _sdpa_mask(padding: Optional[torch.Tensor],
                   attn_mask: Optional[torch.Tensor], num_tokens: int,
                   dtype: torch.dtype) -> Optional[torch.Tensor]:
        """Combine key padding and a user mask into one SDPA mask."""
        allowed = None
        if padding is not None:
            allowed = ~padding[:, None, None, :]
        if attn_mask is None:
            return allowed
        if attn_mask.shape[-2:] != (num_tokens, num_tokens):
            raise ValueError(f'attn_mask must end in ({num_tokens}, '
                             f'{num_tokens}), got {tuple(attn_mask.shape)}.')
        if attn_mask.dim() == 3:
            attn_mask = attn_mask.unsqueeze(1)
        if attn_mask.dtype == torch.bool:
            blocked = ~attn_mask
            return blocked if allowed is None else blocked & allowed
        additive = attn_mask.to(dtype)
        if allowed is not None:
            additive = additive.masked_fill(~allowed, float('-inf'))
        return additive

    def forward_sequence(self,
                         images: Optional[torch.Tensor] = None,
                         text_ids: Optional[torch.Tensor] = None,
                         text_padding_mask: Optional[torch.Tensor] = None,
                         vision_mask: Optional[torch.Tensor] = None,
                         text_mask: Optional[torch.Tensor] = None,
                         attn_mask: Optional[torch.Tensor] = None
                         ) -> torch.Tensor:
        """Final hidden states of an image, text or image-text sequence.

        Args:
            images (Tensor, optional): ``(B, 3, H, W)``.
            text_ids (Tensor, optional): ``(B, L)`` token ids.
            text_padding_mask (Tensor, optional): ``(B, L)``, True at padding.
            vision_mask (Tensor, optional): ``(B, h*w)`` or ``(B, h, w)``, True
                at patches replaced by the learned mask token.
            text_mask (Tensor, optional): ``(B, L)``, True at tokens replaced
                by the mask token (``text_mask_token_id``).
            attn_mask (Tensor, optional): ``(N, N)`` or ``(B, N, N)`` over the
                whole sequence: boolean with True where a query may NOT
                attend to a key (e.g. prefix-causal captioning), or an
                additive float mask.

        Returns:
            Tensor: ``(B, N_image_tokens + N_text_tokens, C)`` after the final
            norm, image tokens (CLS first) before text tokens.
        """
        output, _ = self.encode(images, text_ids, text_padding_mask,
                                vision_mask, text_mask, attn_mask)
        return output.hidden_states

    def forward_cached(self,
                       text_ids: torch.Tensor,
                       images: Optional[torch.Tensor] = None,
                       cache: Optional[KVCache] = None,
                       text_mask: Optional[torch.Tensor] = None,
                       max_text_tokens: Optional[int] = None
                       ) -> Tuple[torch.Tensor, KVCache]:
        """Encode new tokens of a prefix-causal sequence against cached keys
        and values (incremental decoding, e.g. captioning).

        The sequence is ``[image tokens | text tokens]`` under the mask of
        prefix-causal captioning: image tokens attend to image tokens, a text
        token to every image token and to the text tokens up to itself. The
        first call passes the image (optional) and the first text tokens
        without a cache; later calls pass only the next text tokens with the
        cache returned before. The outputs equal those of
        :meth:`forward_sequence` on the whole sequence with that
        ``attn_mask`` (``tests/test_vl_captioning.py``).

        The cache is preallocated (:class:`~mmvlp.models.backbones.
        beit3_cache.KVCache`): new keys and values are written in place
        after the cached tokens, and the call returns the same cache object
        with its length advanced.

        Args:
            text_ids (Tensor): ``(B, n)`` new text tokens (no padding).
            images (Tensor, optional): ``(B, 3, H, W)``, first call only.
            cache (KVCache, optional): What an earlier call returned; its
                text length is the position of the first new token.
            text_mask (Tensor, optional): ``(B, n)``, True at tokens replaced
                by the mask token.
            max_text_tokens (int, optional): First call only: text tokens to
                reserve room for (the cache grows when it runs out).
                Defaults to ``n + 16``.

        Returns:
            tuple: The new tokens' hidden states after the final norm,
            ``(B, N_image_tokens + n, C)`` on the first call with images and
            ``(B, n, C)`` otherwise, and the :class:`KVCache` of every token
            so far (trim it to drop tokens that must not stay, e.g. a
            placeholder mask token).
        """
        if self.vision_only:
            raise ValueError('This BEiT3 was built with vision_only=True and '
                             'has no text parts.')
        if cache is not None and images is not None:
            raise ValueError('images belong to the first call only; later '
                             'calls pass the next text tokens and the cache.')
        if text_mask is not None and text_mask.shape != text_ids.shape:
            raise ValueError('text_mask must have the shape of text_ids '
                             f'{tuple(text_ids.shape)}, got '
                             f'{tuple(text_mask.shape)}.')
        past_len = 0 if cache is None else cache.length
        num_image = 0 if cache is None else cache.num_image_tokens
        parts = []
        if images is not None:
            image_tokens, _ = self._embed_images(images, None)
            num_image = image_tokens.shape[1]
            parts.append(image_tokens)
        text_start = past_len - (0 if cache is None else num_image)
        parts.append(self._embed_text(text_ids, text_mask, start=text_start))
        if len(parts) > 1 and parts[0].shape[0] != parts[1].shape[0]:
            raise ValueError(f'images and text_ids have different batch sizes '
                             f'({parts[0].shape[0]} vs {parts[1].shape[0]}).')
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        if cache is None:
            reserve = max_text_tokens or text_ids.shape[1] + 16
            cache = KVCache(self.num_layers, num_image,
                            num_image + max(reserve, text_ids.shape[1]))
        split = x.shape[1] - text_ids.shape[1]  # image tokens among the new
        # Prefix-causal mask of the new queries over all keys (True = may
        # attend): image keys for everyone, earlier text keys for text.
        queries = torch.arange(past_len, past_len + x.shape[1],
                               device=x.device)
        keys = torch.arange(past_len + x.shape[1], device=x.device)
        allowed = (keys[None, :] < num_image) | (
            (queries[:, None] >= num_image) &
            (keys[None, :] <= queries[:, None]))
        fuse = num_image > 0
        for index, layer in enumerate(self.layers):
            store = partial(cache.write, index, start=past_len)
            x = layer.forward_cached(x, split, store, allowed, fuse)
        cache.length = past_len + x.shape[1]
        if self.norm is not None:
            x = self.norm(x, split)
        return x, cache
