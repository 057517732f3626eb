"""Simple predictors of masked tokens, the baselines a masked-modeling
result has to beat.

Images: every masked patch gets the most frequent token among the visible
patches of its image (:func:`visible_majority`), or the token of the nearest
visible patch (:func:`nearest_visible`). Texts: the most frequent training
token at each position, or after the previous token (:class:`NgramBaseline`,
fitted on training texts).
"""
from collections import Counter
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

__all__ = ['visible_majority', 'nearest_visible', 'NgramBaseline']


def _most_common(counts: Counter, default: int) -> int:
    """The most frequent key, the smallest one among equals."""
    if not counts:
        return default
    top = max(counts.values())
    return min(key for key, count in counts.items() if count == top)


def visible_majority(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Predict every patch of an image as its most frequent visible token.

    Args:
        tokens (np.ndarray): ``(N, P)`` true token ids.
        mask (np.ndarray): ``(N, P)`` bool, True where a patch is masked.

    Returns:
        np.ndarray: ``(N, P)`` predictions (read them where ``mask``).
        Ties go to the smallest id; an image without a visible patch gets
        the most frequent token over all visible patches of the batch.
    """
    tokens, mask = np.asarray(tokens), np.asarray(mask, dtype=bool)
    fallback = _most_common(Counter(tokens[~mask].tolist()), 0)
    rows = [_most_common(Counter(row[~hidden].tolist()), fallback)
            for row, hidden in zip(tokens, mask)]
    return np.repeat(np.asarray(rows, dtype=tokens.dtype)[:, None],
                     tokens.shape[1], axis=1)


def nearest_visible(tokens: np.ndarray, mask: np.ndarray,
                    grid: Sequence[int]) -> np.ndarray:
    """Predict every masked patch as the token of the nearest visible patch.

    Distances are Euclidean on the patch grid; among equally near visible
    patches the most frequent token wins (then the smallest id).

    Args:
        tokens (np.ndarray): ``(N, P)`` true token ids, ``P = h * w`` in
            row-major order.
        mask (np.ndarray): ``(N, P)`` bool, True where a patch is masked.
        grid (Sequence[int]): ``(h, w)``.

    Returns:
        np.ndarray: ``(N, P)`` predictions; visible patches keep their own
        token. Images without a visible patch fall back to
        :func:`visible_majority`.
    """
    tokens, mask = np.asarray(tokens), np.asarray(mask, dtype=bool)
    height, width = grid
    if tokens.shape[1] != height * width:
        raise ValueError(f'tokens have {tokens.shape[1]} patches per image, '
                         f'the grid {height}x{width} has {height * width}.')
    ys, xs = np.divmod(np.arange(height * width), width)
    distance = (ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2
    out = visible_majority(tokens, mask)
    for row, (values, hidden) in enumerate(zip(tokens, mask)):
        visible = np.flatnonzero(~hidden)
        if not len(visible):
            continue
        out[row, visible] = values[visible]
        for patch in np.flatnonzero(hidden):
            near = distance[patch, visible]
            nearest = visible[near == near.min()]
            out[row, patch] = _most_common(Counter(values[nearest].tolist()),
                                           0)
    return out


class NgramBaseline:
    """Position-majority and bigram predictors fitted on training texts.

    Args:
        sequences (Iterable[Sequence[int]]): Token ids of the training texts
            (as the model sees them, with ``<s>``/``</s>``, no padding).
        length (int): Positions to keep statistics for (the padded length).
    """

    def __init__(self, sequences: Iterable[Sequence[int]],
                 length: int) -> None:
        positions = [Counter() for _ in range(length)]
        following: Dict[int, Counter] = {}
        overall = Counter()
        for ids in sequences:
            ids = list(ids)[:length]
            overall.update(ids)
            for index, token in enumerate(ids):
                positions[index][token] += 1
                if index:
                    following.setdefault(ids[index - 1], Counter())[
                        token] += 1
        self.majority = _most_common(overall, 0)
        self.position = np.asarray(
            [_most_common(c, self.majority) for c in positions])
        self.next_token = {prev: _most_common(c, self.majority)
                           for prev, c in following.items()}

    def predict_position(self, masked_ids: np.ndarray) -> np.ndarray:
        """``(N, L)``: the training texts' most frequent token per position.

        Args:
            masked_ids (np.ndarray): ``(N, L)`` model inputs (only the shape
                is used).
        """
        masked_ids = np.asarray(masked_ids)
        return np.broadcast_to(self.position[:masked_ids.shape[1]],
                               masked_ids.shape).copy()

    def predict_bigram(self, masked_ids: np.ndarray,
                       mask_id: Optional[int] = None) -> np.ndarray:
        """``(N, L)``: the most frequent follower of the previous input token.

        Where the previous token is the mask id (or was never followed by
        anything in training), the position majority is predicted.

        Args:
            masked_ids (np.ndarray): ``(N, L)`` model inputs.
            mask_id (int, optional): The mask token id.
        """
        masked_ids = np.asarray(masked_ids)
        out = self.predict_position(masked_ids)
        for row, ids in enumerate(masked_ids):
            for index in range(1, len(ids)):
                prev = int(ids[index - 1])
                if prev != mask_id and prev in self.next_token:
                    out[row, index] = self.next_token[prev]
        return out
