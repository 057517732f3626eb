"""BEiT v2 (VQ-KD) vector quantizer: cosine codebook with normalised EMA."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce, broadcast, get_rank
from mmengine.model import BaseModule
from torch import Tensor

from mmvlp.registry import MODELS
from .base import (QuantizerOutput, check_last_dim, counts_perplexity,
                   fp32_region, straight_through)


def l2norm(x: Tensor) -> Tensor:
    """L2-normalise ``x`` over its last dimension."""
    return F.normalize(x, p=2, dim=-1)


def sample_rows(x: Tensor, num: int) -> Tensor:
    """Pick ``num`` random rows of ``x``.

    Rows are drawn without replacement when ``x`` has at least ``num`` rows
    and with replacement otherwise.

    Args:
        x (Tensor): Shape ``(N, D)`` with ``N >= 1``.
        num (int): How many rows to return.

    Returns:
        Tensor: Shape ``(num, D)``.
    """
    n = x.shape[0]
    if n >= num:
        idx = torch.randperm(n, device=x.device)[:num]
    else:
        idx = torch.randint(0, n, (num, ), device=x.device)
    return x[idx]


_ASSIGN_BLOCK_ELEMENTS = 1 << 21


def assign_by_cosine(x: Tensor, codebook: Tensor) -> Tensor:
    """Index of the most cosine-similar codebook row for each row of ``x``.

    For unit vectors this is also the row at the smallest euclidean distance.

    Args:
        x (Tensor): Shape ``(N, D)``, unit rows.
        codebook (Tensor): Shape ``(K, D)``, unit rows.

    Returns:
        Tensor: ``int64`` indices of shape ``(N,)``.
    """
    codebook_t = codebook.t().to(x.dtype)
    if x.device.type != 'cpu':
        return (x @ codebook_t).max(dim=-1).indices
    # On CPU, row blocks keep each similarity block in cache (8 MiB) and
    # ``max(dim).indices`` (first maximum, as ``argmax``) is much faster than
    # ``argmax`` there: 4.5x for 1568 x 8192 (docs/benchmarks.md).
    rows = max(1, _ASSIGN_BLOCK_ELEMENTS // codebook.shape[0])
    indices = torch.empty(x.shape[0], dtype=torch.long)
    for start in range(0, x.shape[0], rows):
        block = x[start:start + rows] @ codebook_t
        indices[start:start + rows] = block.max(dim=-1).indices
    return indices


def spherical_kmeans(x: Tensor, num_clusters: int,
                     num_iters: int) -> Tuple[Tensor, Tensor]:
    """Cosine k-means on unit vectors.

    Centroids start as randomly sampled rows of ``x`` (with replacement when
    there are fewer rows than clusters). Each iteration assigns every row to
    its most similar centroid and moves each non-empty cluster's centroid to
    the l2-normalised mean of its rows; empty clusters keep their centroid.

    Args:
        x (Tensor): Shape ``(N, D)``, unit rows, ``N >= 1``.
        num_clusters (int): Number of centroids ``K``.
        num_iters (int): Number of assignment/update iterations.

    Returns:
        Tuple[Tensor, Tensor]: The ``(K, D)`` unit centroids and the ``(K,)``
        float count of rows assigned to each final centroid.
    """
    centroids = sample_rows(x, num_clusters)
    for _ in range(num_iters):
        idx = assign_by_cosine(x, centroids)
        sums = x.new_zeros(num_clusters, x.shape[1]).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=num_clusters)
        centroids = torch.where((counts > 0)[:, None], l2norm(sums),
                                centroids)
    counts = torch.bincount(
        assign_by_cosine(x, centroids), minlength=num_clusters)
    return centroids, counts.to(x.dtype)


@MODELS.register_module()
class NormEMAVectorQuantizer(BaseModule):
    """Vector quantizer of BEiT v2's VQ-KD tokenizer.

    Inputs and codebook rows are l2-normalised, a vector is assigned to its
    most cosine-similar code, and the codebook (a buffer, never touched by
    the optimizer) is updated in training mode with an exponential moving
    average of the normalised mean of the vectors assigned to each code:
    ``row <- l2norm(decay * row + (1 - decay) * l2norm(mean))``. Codes not
    used by the (global) batch keep their row. The per-code counts and sums
    are summed over all ranks when ``torch.distributed`` is initialised, so
    every rank applies the same update.

    With ``kmeans_init=True`` the first training forward runs spherical
    k-means on the batch. To keep ranks identical, rank 0 runs it on its
    local batch and broadcasts the codebook and cluster sizes (the other
    ranks' batches are not used for the init). Eval-mode forwards never
    initialise or update anything, so quantizing with an uninitialised
    codebook in eval mode maps every vector to code 0.

    The normalisation, code assignment, EMA and commitment run in float32
    with autocast switched off, so bf16 autocast (or a bf16 codebook) does
    not change the code choices; ``quantized`` has the input's dtype.

    Optional dead-code restart (``dead_code_restart_steps=N``): a code that
    no rank used for ``N`` consecutive training steps is re-seeded, after
    the EMA update, with a random l2-normalised vector of rank 0's batch
    (broadcast to all ranks). ``None`` (default) disables it and keeps the
    reference behaviour.

    Besides the EMA statistics, a usage window (``usage_counts``, not saved
    in checkpoints) accumulates code counts until :meth:`reset_usage`; see
    :meth:`codebook_stats`. Training forwards add the all-rank counts, eval
    forwards add this rank's counts (eval forwards run no collective).

    Args:
        num_codes (int): Codebook size ``K``. Defaults to 8192.
        code_dims (int): Code width ``D``. Defaults to 32.
        decay (float): EMA decay in ``[0, 1)``. Defaults to 0.99.
        beta (float): Weight of the commitment loss. Defaults to 1.0.
        kmeans_init (bool): Initialise the codebook by k-means on the first
            training batch; otherwise with l2-normalised random normal rows.
            Defaults to True.
        kmeans_iters (int): Number of k-means iterations. Defaults to 10.
        dead_code_restart_steps (int, optional): Re-seed codes unused for
            this many training steps. Defaults to None (never).
        eps (float): Numerical floor used when normalising vectors.
            Defaults to 1e-5.
        init_cfg (dict, optional): Initialisation config of
            :class:`mmengine.model.BaseModule`. Defaults to None.
    """

    def __init__(self,
                 num_codes: int = 8192,
                 code_dims: int = 32,
                 decay: float = 0.99,
                 beta: float = 1.0,
                 kmeans_init: bool = True,
                 kmeans_iters: int = 10,
                 dead_code_restart_steps: Optional[int] = None,
                 eps: float = 1e-5,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_args(num_codes, code_dims, decay, kmeans_iters,
                    dead_code_restart_steps, eps)
        self.num_codes = num_codes
        self.code_dims = code_dims
        self.decay = decay
        self.beta = beta
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_restart_steps = dead_code_restart_steps
        self.eps = eps

        if kmeans_init:
            codebook = torch.zeros(num_codes, code_dims)
        else:
            codebook = l2norm(torch.randn(num_codes, code_dims))
        self.register_buffer('codebook', codebook)
        self.register_buffer('cluster_size', torch.zeros(num_codes))
        self.register_buffer('initted', torch.tensor(not kmeans_init))
        if dead_code_restart_steps is not None:
            self.register_buffer('unused_steps',
                                 torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer(
            'usage_counts',
            torch.zeros(num_codes, dtype=torch.long),
            persistent=False)

    @property
    def vocab_size(self) -> int:
        """int: Number of codes."""
        return self.num_codes

    def _normalize(self, x: Tensor) -> Tensor:
        return F.normalize(x, p=2, dim=-1, eps=self.eps)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize channels-last vectors.

        Args:
            z (Tensor): Shape ``(..., code_dims)``, e.g. ``(B, h, w, D)`` or
                ``(B, N, D)``. Need not be normalised.

        Returns:
            QuantizerOutput: ``quantized`` is the code of each l2-normalised
            vector with a straight-through gradient to the normalised
            vector; ``losses`` holds ``'commitment'`` (MSE between the
            normalised input and its detached code) and ``loss`` is
            ``beta * commitment``. ``stats`` (of this rank's batch) holds
            ``'perplexity'``, ``'used_codes'`` and ``'restarted_codes'``.
        """
        check_last_dim(z, self.code_dims, 'z')
        with fp32_region(z.device):
            return self._quantize(z)

    def _quantize(self, z: Tensor) -> QuantizerOutput:
        """:meth:`forward` in float32 (autocast is off here)."""
        dtype = z.dtype
        z = self._normalize(z.float())
        flat = z.reshape(-1, self.code_dims)
        if self.training and not bool(self.initted):
            self._kmeans_init_(flat)

        indices = assign_by_cosine(flat.detach(), self.codebook.float())
        code = F.embedding(indices, self.codebook).float().view_as(z)
        local_counts = torch.bincount(indices, minlength=self.num_codes)

        restarted = torch.zeros((), dtype=torch.long, device=z.device)
        if self.training:
            global_counts = self._ema_update_(flat, indices)
            if self.dead_code_restart_steps is not None:
                restarted = self._restart_dead_codes_(flat, global_counts)
            self.usage_counts += global_counts.round().long()
        else:
            self.usage_counts += local_counts

        commitment = F.mse_loss(code.detach(), z)
        stats = dict(
            perplexity=counts_perplexity(local_counts),
            used_codes=(local_counts > 0).sum(),
            restarted_codes=restarted)
        return QuantizerOutput(
            quantized=straight_through(z, code).to(dtype),
            indices=indices.view(z.shape[:-1]),
            loss=self.beta * commitment,
            losses=dict(commitment=commitment),
            stats=stats)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Look codes up in the codebook.

        Args:
            indices (Tensor): Integer tensor of any shape ``S``.

        Returns:
            Tensor: Shape ``(*S, code_dims)``.
        """
        return F.embedding(indices, self.codebook)

    @torch.no_grad()
    def _kmeans_init_(self, flat: Tensor) -> None:
        """Set codebook and cluster sizes by k-means (rank 0, broadcast)."""
        x = flat.detach().to(self.codebook.dtype)
        if get_rank() == 0:
            centroids, counts = spherical_kmeans(x, self.num_codes,
                                                 self.kmeans_iters)
        else:
            centroids = torch.empty_like(self.codebook)
            counts = torch.empty_like(self.cluster_size)
        broadcast(centroids, src=0)
        broadcast(counts, src=0)
        self.codebook.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_update_(self, flat: Tensor, indices: Tensor) -> Tensor:
        """EMA step of cluster sizes and codebook; returns all-rank counts."""
        x = flat.detach().to(self.codebook.dtype)
        # One all-reduce for both statistics: columns [:D] hold the per-code
        # sums of assigned vectors, column D the per-code counts.
        stats = x.new_zeros(self.num_codes, self.code_dims + 1)
        stats.index_add_(0, indices, F.pad(x, (0, 1), value=1.))
        all_reduce(stats, op='sum')
        sums, counts = stats[:, :-1], stats[:, -1]

        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        used = (counts > 0)[:, None]
        means = self._normalize(sums / counts.clamp_min(1.)[:, None])
        moved = self._normalize(self.decay * self.codebook +
                                (1 - self.decay) * means)
        self.codebook.copy_(torch.where(used, moved, self.codebook))
        return counts

    @torch.no_grad()
    def _restart_dead_codes_(self, flat: Tensor, counts: Tensor) -> Tensor:
        """Re-seed codes unused for ``dead_code_restart_steps`` steps.

        The dead set is the same on every rank (it only depends on all-rank
        counts); the replacement vectors are drawn on rank 0 and broadcast.

        Returns:
            Tensor: Scalar ``int64``, the number of re-seeded codes.
        """
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = self.unused_steps >= self.dead_code_restart_steps
        num_dead = int(dead.sum())
        if num_dead > 0 and flat.shape[0] > 0:
            x = flat.detach().to(self.codebook.dtype)
            if get_rank() == 0:
                rows = self._normalize(sample_rows(x, num_dead))
            else:
                rows = x.new_empty(num_dead, self.code_dims)
            broadcast(rows, src=0)
            self.codebook[dead] = rows
            self.unused_steps.masked_fill_(dead, 0)
        else:
            num_dead = 0
        return torch.tensor(num_dead, device=flat.device)

    def codebook_stats(self) -> Dict[str, float]:
        """Codebook usage accumulated since the last :meth:`reset_usage`.

        Returns:
            Dict[str, float]: ``usage`` (fraction of codes used, 0..1),
            ``perplexity`` (exp of the entropy of the window's code
            histogram; 0 for an empty window) and ``dead_codes`` (number of
            codes not used in the window).
        """
        used = int((self.usage_counts > 0).sum())
        return dict(
            usage=used / self.num_codes,
            perplexity=float(counts_perplexity(self.usage_counts)),
            dead_codes=float(self.num_codes - used))

    def reset_usage(self) -> None:
        """Start a new usage window (see :meth:`codebook_stats`)."""
        self.usage_counts.zero_()


def _check_args(num_codes: int, code_dims: int, decay: float,
                kmeans_iters: int, dead_code_restart_steps: Optional[int],
                eps: float) -> None:
    """Raise ``ValueError`` for invalid constructor arguments."""
    if num_codes < 1:
        raise ValueError(f'num_codes must be >= 1, got {num_codes}')
    if code_dims < 1:
        raise ValueError(f'code_dims must be >= 1, got {code_dims}')
    if not 0. <= decay < 1.:
        raise ValueError(f'decay must be in [0, 1), got {decay}')
    if kmeans_iters < 0:
        raise ValueError(f'kmeans_iters must be >= 0, got {kmeans_iters}')
    if dead_code_restart_steps is not None and dead_code_restart_steps < 1:
        raise ValueError('dead_code_restart_steps must be None or an int '
                         f'>= 1, got {dead_code_restart_steps}')
    if eps <= 0:
        raise ValueError(f'eps must be > 0, got {eps}')
