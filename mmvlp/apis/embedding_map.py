"""A 2-D picture of embeddings: PCA or t-SNE (scikit-learn), coloured by a
label."""
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np

__all__ = ['project_2d', 'plot_embedding_map', 'MAP_METHODS']

MAP_METHODS = ('pca', 'tsne')


def project_2d(features: np.ndarray, method: str = 'pca',
               seed: int = 0) -> np.ndarray:
    """``(N, C)`` -> ``(N, 2)`` with scikit-learn's ``PCA`` or ``TSNE``
    (perplexity ``min(30, (N - 1) / 3)``; both seeded)."""
    if method not in MAP_METHODS:
        raise ValueError(f'method must be one of {MAP_METHODS}, got '
                         f'{method!r}.')
    features = np.asarray(features, dtype=np.float64).reshape(
        len(features), -1)
    if len(features) < 3:
        raise ValueError(f'A 2-D map needs at least 3 embeddings, got '
                         f'{len(features)}.')
    if method == 'pca':
        from sklearn.decomposition import PCA
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    from sklearn.manifold import TSNE
    perplexity = float(min(30., (len(features) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init='pca',
                random_state=seed).fit_transform(features)


def plot_embedding_map(features: np.ndarray,
                       out_file: str,
                       labels: Optional[Sequence] = None,
                       method: str = 'pca',
                       title: Optional[str] = None,
                       colors: Optional[dict] = None) -> np.ndarray:
    """Save a scatter plot of embeddings projected to 2-D.

    Args:
        features (np.ndarray): ``(N, C)`` (higher ranks are flattened).
        out_file (str): The image file (``.png``, ``.pdf`` ...).
        labels (Sequence, optional): One label per embedding; points are
            coloured and a legend lists the labels.
        method (str): ``'pca'`` or ``'tsne'``.
        title (str, optional): Plot title.
        colors (dict, optional): Label -> matplotlib colour (e.g. the demo's
            colour names); others get the ``tab20`` palette.

    Returns:
        np.ndarray: The ``(N, 2)`` coordinates.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    points = project_2d(features, method)
    if labels is not None and len(labels) != len(points):
        raise ValueError(f'{len(labels)} labels for {len(points)} '
                         'embeddings.')
    figure, axis = plt.subplots(figsize=(6, 6))
    if labels is None:
        axis.scatter(points[:, 0], points[:, 1], s=8)
    else:
        names = sorted({str(label) for label in labels})
        palette = plt.get_cmap('tab20')
        for index, name in enumerate(names):
            rows = [i for i, label in enumerate(labels) if str(label) == name]
            color = (colors or {}).get(name, palette(index % 20))
            axis.scatter(points[rows, 0], points[rows, 1], s=10, label=name,
                         color=color, edgecolors='0.3', linewidths=0.3)
        axis.legend(fontsize=7, markerscale=1.5, loc='best')
    axis.set_title(title or f'{method.upper()} of {len(points)} embeddings')
    axis.set_xticks([])
    axis.set_yticks([])
    folder = osp.dirname(out_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out_file, dpi=120)
    plt.close(figure)
    return points
