"""Preallocated key/value cache of :meth:`BEiT3.forward_cached`.

Incremental decoding (captioning) adds a few text tokens per step. Instead
of concatenating every layer's keys and values with the new ones at each
step (a copy of the whole cache per step and layer), the cache holds one
buffer per layer with room for ``capacity`` tokens: new keys and values are
written in place and attention reads a view of the first ``length`` tokens.
Dropping trailing tokens (the mask placeholder of each step) only moves
``length``; reordering beams copies the text tokens only, because the beams of
one image share its image tokens.
"""
from typing import List, Optional, Tuple

import torch

__all__ = ['KVCache']


class KVCache:
    """Keys and values of every layer for the tokens encoded so far.

    Buffers are ``(B, heads, capacity, head_dims)`` per layer, allocated by
    the first write (in the dtype and on the device of the keys) and grown
    (doubled) when a write goes past ``capacity``.

    Args:
        num_layers (int): Layers of the encoder.
        num_image_tokens (int): How many of the cached tokens are image
            tokens (they come first).
        capacity (int): Tokens to reserve per buffer (images included).
    """

    def __init__(self, num_layers: int, num_image_tokens: int,
                 capacity: int) -> None:
        self.layers: List[Optional[Tuple[torch.Tensor, torch.Tensor]]] = \
            [None] * num_layers
        self.num_image_tokens = num_image_tokens
        self.capacity = capacity
        self.length = 0

    @property
    def num_text_tokens(self) -> int:
        """Number of cached text tokens."""
        return self.length - self.num_image_tokens

    def keys_values(self, layer: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Views ``(B, heads, length, head_dims)`` of one layer's cache."""
        keys, values = self.layers[layer]
        return keys[:, :, :self.length], values[:, :, :self.length]

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor,
              start: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Store new keys/values at token ``start`` of a layer and return
        views of all tokens up to them.

        Args:
            layer (int): Layer index.
            keys (Tensor): ``(B, heads, n, head_dims)`` of the new tokens.
            values (Tensor): Same shape.
            start (int): Position of the first new token.

        Returns:
            tuple: ``(B, heads, start + n, head_dims)`` keys and values.
        """
        end = start + keys.shape[2]
        buffers = self.layers[layer]
        if buffers is None or end > buffers[0].shape[2]:
            size = max(end, self.capacity)
            if buffers is not None:
                size = max(end, 2 * buffers[0].shape[2])
            shape = keys.shape[:2] + (size, keys.shape[3])
            grown = (keys.new_empty(shape), values.new_empty(shape))
            if buffers is not None:
                for new, old in zip(grown, buffers):
                    new[:, :, :start] = old[:, :, :start]
            buffers = self.layers[layer] = grown
            self.capacity = size
        buffers[0][:, :, start:end] = keys
        buffers[1][:, :, start:end] = values
        return buffers[0][:, :, :end], buffers[1][:, :, :end]

    def _like(self, length: int) -> 'KVCache':
        other = KVCache(0, self.num_image_tokens, self.capacity)
        other.layers, other.length = self.layers, length
        return other

    def trim(self, length: int) -> 'KVCache':
        """The cache of the first ``length`` tokens.

        It shares the buffers (nothing is copied): encoding tokens after a
        trimmed cache overwrites the dropped tokens in every cache that
        shares them.
        """
        if not self.num_image_tokens <= length <= self.length:
            raise ValueError(f'Cannot trim a cache of {self.length} tokens '
                             f'({self.num_image_tokens} image tokens) to '
                             f'{length}.')
        return self._like(length)

    def index_select(self, index: torch.Tensor) -> 'KVCache':
        """A new cache of the batch rows ``index`` (copies every token)."""
        other = self._like(self.length)
        other.layers = [
            None if kv is None else tuple(
                t.index_select(0, index) for t in kv) for kv in self.layers]
        return other

    def reorder_text_(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` in place, copying text tokens only.

        Row ``i`` takes the text tokens of row ``index[i]``; the image tokens
        stay, so rows ``i`` and ``index[i]`` must hold the same image (the
        beams of one image in beam search).

        Args:
            index (Tensor): ``(B,)`` source rows.
        """
        start, end = self.num_image_tokens, self.length
        if end <= start:
            return
        for kv in self.layers:
            for buffer in kv:
                buffer[:, :, start:end] = buffer[:, :, start:end].index_select(
                    0, index)
