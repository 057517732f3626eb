"""Binary Spherical Quantization (BSQ-ViT / QLIP)."""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmvlp.registry import MODELS
from .base import QuantizerOutput, check_last_dim, entropy, straight_through

MAX_CODE_DIMS = 62
MAX_GROUP_SIZE = 16


def sign_bits(u: Tensor) -> Tensor:
    """Bits of the binary code of ``u``: ``u_i >= 0`` (so sign(0) := +1)."""
    return u >= 0


def bits_to_indices(bits: Tensor) -> Tensor:
    """Pack boolean bits ``(..., L)`` into ``int64`` indices ``(...)``.

    Bit ``i`` of the index is ``bits[..., i]`` (little-endian).
    """
    shifts = torch.arange(bits.shape[-1], device=bits.device)
    return (bits.long() << shifts).sum(-1)


def indices_to_bits(indices: Tensor, num_bits: int) -> Tensor:
    """Unpack ``int64`` indices ``(...)`` into boolean bits ``(..., L)``."""
    shifts = torch.arange(num_bits, device=indices.device)
    return ((indices.long()[..., None] >> shifts) & 1).bool()


def all_sign_vectors(num_bits: int) -> Tensor:
    """All ``2**num_bits`` vectors of ±1 in index order, shape ``(2**n, n)``.

    Row ``j`` has ``+1`` at position ``i`` iff bit ``i`` of ``j`` is set.
    """
    indices = torch.arange(2**num_bits)
    return indices_to_bits(indices, num_bits).float() * 2 - 1


@MODELS.register_module()
class BinarySphericalQuantizer(BaseModule):
    """Binary spherical quantizer with a group-factorised entropy penalty.

    A vector is (optionally projected to ``code_dims = L`` dims and)
    l2-normalised to ``u``; its code is ``sign(u) / sqrt(L)`` with
    ``sign(0) := +1``, a point of the unit sphere, and the output is
    ``u + (code - u).detach()`` (straight-through), projected back to
    ``in_dims`` when an input projection is used. The codebook is implicit
    with ``2**L`` entries; index bit ``i`` is set iff ``u_i >= 0`` (i.e. iff
    ``code_i > 0``), which makes the code/index mapping bijective.

    Entropy penalty: the ``L`` dims are split into ``L / group_size`` groups;
    group ``g`` has the sub-codebook ``C`` of all ``2**group_size`` sign
    vectors scaled by ``1/sqrt(L)`` and the soft assignment

    ``q_g(c | u) = softmax_c(inv_temperature * 2 * <u_g, c>)``

    which equals ``softmax_c(-inv_temperature * ||u_g - c||^2)`` because
    ``||u_g||^2`` and ``||c||^2`` do not depend on ``c``. Then

    - ``per_sample_entropy = mean_u sum_g H(q_g(. | u))``. The soft
      assignment over the full ``2**L`` codebook factorises over dims, so
      this equals the entropy of the full per-sample distribution exactly,
      whatever the group size.
    - ``codebook_entropy = sum_g H(mean_u q_g(. | u))``. This is the sum of
      the group-marginal entropies of the batch-averaged full distribution,
      an upper bound (subadditivity) of its exact joint entropy, equal to it
      when ``group_size == L``.

    ``loss = entropy_weight * (per_sample_weight * per_sample_entropy -
    codebook_weight * codebook_entropy)`` (entropies in nats, computed in
    float32): low per-sample entropy makes codes confident, high codebook
    entropy spreads the batch over the codebook.

    Args:
        code_dims (int): Number of bits ``L``, in ``[1, 62]``.
        in_dims (int, optional): If given, input and output width, with
            linear projections ``in_dims -> L`` before and ``L -> in_dims``
            after quantization. Otherwise inputs must have width ``L``.
            Defaults to None.
        group_size (int): Bits per entropy group; must divide ``L`` and be
            at most 16. Defaults to 9.
        inv_temperature (float): Inverse temperature of the soft
            assignment. Defaults to 100.0.
        per_sample_weight (float): Weight of the per-sample entropy.
            Defaults to 1.0.
        codebook_weight (float): Weight of the codebook entropy.
            Defaults to 1.0.
        entropy_weight (float): Overall weight of the entropy penalty.
            Defaults to 0.1.
        init_cfg (dict, optional): Initialisation config of
            :class:`mmengine.model.BaseModule`. Defaults to None.
    """

    def __init__(self,
                 code_dims: int,
                 in_dims: Optional[int] = None,
                 group_size: int = 9,
                 inv_temperature: float = 100.0,
                 per_sample_weight: float = 1.0,
                 codebook_weight: float = 1.0,
                 entropy_weight: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_args(code_dims, in_dims, group_size)
        self.code_dims = code_dims
        self.in_dims = in_dims
        self.group_size = group_size
        self.num_groups = code_dims // group_size
        self.inv_temperature = inv_temperature
        self.per_sample_weight = per_sample_weight
        self.codebook_weight = codebook_weight
        self.entropy_weight = entropy_weight
        self.scale = 1. / math.sqrt(code_dims)

        if in_dims is not None:
            self.in_proj = nn.Linear(in_dims, code_dims)
            self.out_proj = nn.Linear(code_dims, in_dims)
        else:
            self.in_proj = self.out_proj = None
        self.register_buffer(
            'group_codebook',
            all_sign_vectors(group_size) * self.scale,
            persistent=False)

    @property
    def vocab_size(self) -> int:
        """int: Size of the implicit codebook, ``2**code_dims``."""
        return 2**self.code_dims

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize channels-last vectors.

        Args:
            z (Tensor): Shape ``(..., in_dims)`` if ``in_dims`` is set,
                else ``(..., code_dims)``.

        Returns:
            QuantizerOutput: ``quantized`` has the shape of ``z``;
            ``losses`` holds ``'per_sample_entropy'`` and
            ``'codebook_entropy'``; ``stats`` holds ``'perplexity'``
            (exp of the codebook-entropy estimate), ``'used_codes'``
            (distinct indices in the batch) and ``'bit_balance'`` (fraction
            of positive bits).
        """
        width = self.code_dims if self.in_dims is None else self.in_dims
        check_last_dim(z, width, 'z')
        if self.in_proj is not None:
            z = self.in_proj(z)
        u = F.normalize(z, p=2, dim=-1)
        bits = sign_bits(u.detach())
        code = (bits.to(u.dtype) * 2 - 1) * self.scale
        quantized = straight_through(u, code)
        if self.out_proj is not None:
            quantized = self.out_proj(quantized)
        indices = bits_to_indices(bits)

        per_sample, codebook = self.entropy_terms(u)
        loss = self.entropy_weight * (
            self.per_sample_weight * per_sample -
            self.codebook_weight * codebook)
        stats = dict(
            perplexity=codebook.detach().exp(),
            used_codes=torch.tensor(
                indices.unique().numel(), device=z.device),
            bit_balance=bits.float().mean())
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=loss,
            losses=dict(
                per_sample_entropy=per_sample, codebook_entropy=codebook),
            stats=stats)

    def entropy_terms(self, u: Tensor) -> Tuple[Tensor, Tensor]:
        """Group-factorised soft-assignment entropies (float32, nats).

        Args:
            u (Tensor): Unit vectors of shape ``(..., code_dims)``.

        Returns:
            Tuple[Tensor, Tensor]: Scalars ``per_sample_entropy`` and
            ``codebook_entropy`` (see the class docstring).
        """
        groups = u.float().reshape(-1, self.num_groups, self.group_size)
        logits = torch.einsum('ngc,kc->ngk', groups,
                              self.group_codebook.float())
        logits = logits * (2 * self.inv_temperature)
        log_probs = logits.log_softmax(dim=-1)
        probs = log_probs.exp()
        per_sample = -(probs * log_probs).sum(-1).sum(-1).mean()
        codebook = entropy(probs.mean(0), dim=-1).sum()
        return per_sample, codebook

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Indices of codes (only their signs matter).

        Args:
            codes (Tensor): Shape ``(..., code_dims)``.

        Returns:
            Tensor: ``int64`` indices in ``[0, 2**code_dims)``, shape
            ``codes.shape[:-1]``.
        """
        check_last_dim(codes, self.code_dims, 'codes')
        return bits_to_indices(sign_bits(codes))

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Codes ``±1/sqrt(L)`` of indices, in the ``code_dims`` space.

        Args:
            indices (Tensor): Integer tensor of any shape ``S``.

        Returns:
            Tensor: Float codes of shape ``(*S, code_dims)``.
        """
        bits = indices_to_bits(indices, self.code_dims)
        return (bits.float() * 2 - 1) * self.scale

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Codes of indices mapped to the output space.

        Args:
            indices (Tensor): Integer tensor of any shape ``S``.

        Returns:
            Tensor: ``out_proj(indices_to_codes(indices))`` of shape
            ``(*S, in_dims)`` when ``in_dims`` is set, else the codes.
        """
        codes = self.indices_to_codes(indices)
        if self.out_proj is None:
            return codes
        return self.out_proj(codes.to(self.out_proj.weight.dtype))


def _check_args(code_dims: int, in_dims: Optional[int],
                group_size: int) -> None:
    """Raise ``ValueError`` for invalid constructor arguments."""
    if not 1 <= code_dims <= MAX_CODE_DIMS:
        raise ValueError(f'code_dims must be in [1, {MAX_CODE_DIMS}] so that '
                         f'indices fit in int64, got {code_dims}')
    if in_dims is not None and in_dims < 1:
        raise ValueError(f'in_dims must be None or >= 1, got {in_dims}')
    if not 1 <= group_size <= MAX_GROUP_SIZE:
        raise ValueError(f'group_size must be in [1, {MAX_GROUP_SIZE}] (the '
                         f'entropy sub-codebook has 2**group_size entries), '
                         f'got {group_size}')
    if code_dims % group_size != 0:
        raise ValueError(f'code_dims ({code_dims}) must be divisible by '
                         f'group_size ({group_size})')
