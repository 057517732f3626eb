"""How often the nearest neighbours of an embedding share its label."""
from typing import Sequence

import numpy as np

__all__ = ['knn_precision', 'knn_chance']


def _codes(labels: Sequence) -> np.ndarray:
    _, codes = np.unique(np.asarray([str(x) for x in labels]),
                         return_inverse=True)
    return codes


def knn_precision(features: np.ndarray, labels: Sequence, k: int) -> float:
    """Mean precision@k of cosine nearest neighbours: for each embedding,
    the share of its ``k`` most similar *other* embeddings with its label.

    Args:
        features (np.ndarray): ``(N, C)``.
        labels (Sequence): ``N`` labels.
        k (int): Neighbours per query (``1 <= k < N``).

    Returns:
        float: In [0, 1].
    """
    features = np.asarray(features, dtype=np.float64).reshape(
        len(features), -1)
    if len(labels) != len(features):
        raise ValueError(f'{len(labels)} labels for {len(features)} '
                         'embeddings.')
    if not 1 <= k < len(features):
        raise ValueError(f'k must be in [1, {len(features) - 1}], got {k}.')
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.maximum(norms, 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    # The k most similar others (ties broken by index, as a stable sort).
    neighbours = np.argsort(-similarity, axis=1, kind='stable')[:, :k]
    codes = _codes(labels)
    return float((codes[neighbours] == codes[:, None]).mean())


def knn_chance(labels: Sequence) -> float:
    """The expected precision@k of neighbours drawn at random among the
    others: the mean over queries of ``(n_label - 1) / (N - 1)``."""
    codes = _codes(labels)
    counts = np.bincount(codes)
    return float(((counts[codes] - 1) / (len(codes) - 1)).mean())
