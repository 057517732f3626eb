"""Binary Spherical Quantization (BSQ-ViT / QLIP), as the official code
computes it.

The facts this module follows (NVlabs/QLIP ``QLIP/bsq.py`` and
zhaoyue-zephyrus/bsq-vit ``transcoder/models/quantizer/bsq.py``):

- Input ``u`` is l2-normalised; the code is ``sign(u) / sqrt(L)`` with
  ``sign(u_i) = +1`` iff ``u_i > 0`` (so ``sign(0) = -1``).
- The straight-through step is taken on the *unscaled* sign and the result
  scaled afterwards, ``(u + (sign(u) - u).detach()) / sqrt(L)``: the gradient
  reaching ``u`` is ``1 / sqrt(L)``.
- Token ids are big-endian: dimension 0 is the most significant bit,
  ``id = sum_i bit_i * 2**(L - 1 - i)``; group ids likewise inside each
  group. mmvlp computes them in exact ``int64`` (the official sums in
  float32, which loses bits above 24).
- Loss: ``beta * commitment + zeta * (gamma0 * per_sample_entropy -
  gamma * codebook_entropy) / inv_temperature`` with entropies of the soft
  group assignments and ``entr(p + eps)`` (QLIP, ``eps = 1e-8``).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmvlp.registry import MODELS
from .base import QuantizerOutput, check_last_dim, fp32_region

MAX_CODE_DIMS = 62
MAX_GROUP_SIZE = 16
PER_SAMPLE_MODES = ('group', 'analytical')
EPS_STYLES = ('qlip', 'bsq-vit')


def sign_bits(x: Tensor) -> Tensor:
    """Bits of the binary code of ``x``: ``x_i > 0`` (so sign(0) := -1)."""
    return x > 0


def bits_to_indices(bits: Tensor) -> Tensor:
    """Pack boolean bits ``(..., n)`` into exact ``int64`` ids ``(...)``.

    Big-endian: ``bits[..., 0]`` is the most significant bit, as the
    official BSQ code. ``n`` must be at most 62.
    """
    num_bits = bits.shape[-1]
    shifts = torch.arange(num_bits - 1, -1, -1, device=bits.device)
    return (bits.long() << shifts).sum(-1)


def indices_to_bits(indices: Tensor, num_bits: int) -> Tensor:
    """Unpack ``int64`` ids ``(...)`` into boolean bits ``(..., num_bits)``,
    most significant first (the inverse of :func:`bits_to_indices`)."""
    shifts = torch.arange(num_bits - 1, -1, -1, device=indices.device)
    return ((indices.long()[..., None] >> shifts) & 1).bool()


def all_sign_vectors(num_bits: int) -> Tensor:
    """All ``2**num_bits`` vectors of ±1 in id order, shape ``(2**n, n)``.

    Row ``j`` has ``+1`` at position ``i`` iff bit ``n - 1 - i`` of ``j`` is
    set (big-endian).
    """
    indices = torch.arange(2**num_bits)
    return indices_to_bits(indices, num_bits).float() * 2 - 1


def soft_entropy(log_probs: Tensor, eps: float, style: str = 'qlip'
                 ) -> Tensor:
    """Entropy (nats) of distributions given by their log-probabilities.

    Reads log-probabilities so that a probability that underflows to 0 still
    has a finite gradient: ``d(p log p) / d(log p) = p (log p + 1)`` is 0
    there instead of ``0 * inf``.

    Args:
        log_probs (Tensor): Finite log-probabilities, distribution on the
            last dimension.
        eps (float): Smoothing of the official code. ``0`` gives the exact
            entropy ``-sum p log p``.
        style (str): Where ``eps`` goes: ``'qlip'`` computes
            ``-sum (p + eps) log(p + eps)`` (QLIP's ``entr(p + eps)``),
            ``'bsq-vit'`` computes ``-sum p log(p + eps)``.

    Returns:
        Tensor: ``log_probs`` with the last dimension reduced.
    """
    probs = log_probs.exp()
    if eps == 0:
        return -(probs * log_probs).sum(-1)
    if style == 'qlip':
        return torch.special.entr(probs + eps).sum(-1)
    return -(probs * torch.log(probs + eps)).sum(-1)


@MODELS.register_module()
class BinarySphericalQuantizer(BaseModule):
    """Binary spherical quantizer with the official group-factorised entropy
    penalty (BSQ-ViT, QLIP).

    A vector is (optionally projected to ``code_dims = L`` dims and)
    l2-normalised to ``u``; its code is ``sign(u) / sqrt(L)``, a point of the
    unit sphere, with ``sign(u_i) = +1`` iff ``u_i > 0``. The output is
    ``(u + (sign(u) - u).detach()) / sqrt(L)``: the straight-through step on
    the unscaled sign, so the gradient to ``u`` is ``1 / sqrt(L)`` as in the
    official code. It is projected back to ``in_dims`` when an input
    projection is used. The codebook is implicit with ``2**L`` entries; ids
    are big-endian (dimension 0 is the most significant bit), exact in
    ``int64`` up to ``L = 62``.

    Entropy penalty: the ``L`` dims are split into ``L / group_size``
    groups; group ``g`` has the sub-codebook of all ``2**group_size`` sign
    vectors ``c`` scaled by ``1/sqrt(L)`` and the soft assignment
    ``q_g(c | u) = softmax_c(2 * inv_temperature * <u_g, c>)``. Then
    ``per_sample_entropy = mean_u sum_g H(q_g(. | u))`` and
    ``codebook_entropy = sum_g H(mean_u q_g(. | u))``, with
    ``H(p) = sum entr(p + eps)`` as QLIP (see ``eps_style``). The batch mean
    is taken in log space (``logsumexp``), so a batch collapsed onto one code
    keeps finite loss and gradients at any temperature.
    ``per_sample_entropy='analytical'`` is the official per-bit variant:
    sigmoid probabilities per bit for both terms.

    ``loss = commitment_weight * commitment + entropy_weight *
    (per_sample_weight * per_sample_entropy - codebook_weight *
    codebook_entropy) / inv_temperature`` with ``commitment =
    mean_u ||code - u||^2`` (code detached). The names map to the official
    ones as ``per_sample_weight = gamma0`` (QLIP ``gamma_0``),
    ``codebook_weight = gamma`` (QLIP ``gamma_1``), ``entropy_weight = zeta``
    (bsq-vit; QLIP has none, i.e. 1), ``commitment_weight = beta``.

    All of this runs in float32 with autocast switched off (entropy einsum,
    input projection, normalisation, signs and ids), so bf16 autocast does
    not change the codes; the output projection follows the caller's
    autocast. ``quantized`` has the input's dtype.

    Args:
        code_dims (int): Number of bits ``L``, in ``[1, 62]``.
        in_dims (int, optional): If given, input and output width, with
            linear projections ``in_dims -> L`` before and ``L -> in_dims``
            after quantization. Otherwise inputs must have width ``L``.
            Defaults to None.
        group_size (int): Bits per entropy group; must divide ``L`` and be
            at most 16. Defaults to 9.
        inv_temperature (float): Inverse temperature of the soft
            assignment; the entropy term is also divided by it. Defaults to
            100.0 (QLIP's default).
        per_sample_weight (float): ``gamma0``. Defaults to 1.0.
        codebook_weight (float): ``gamma``. Defaults to 1.0.
        entropy_weight (float): ``zeta``, the weight of the whole entropy
            term (before the division by ``inv_temperature``). Defaults to
            1.0. mmvlp before the official alignment used
            ``entropy_weight * (...)`` without the division: its old default
            0.1 at temperature 100 equals 10 here.
        commitment_weight (float): ``beta``. Defaults to 0.0 (official).
        per_sample_entropy (str): ``'group'`` (default, official default)
            or ``'analytical'`` (per-bit sigmoid probabilities; then the
            codebook entropy is per bit too, as in the official code).
        entropy_eps (float): The official smoothing ``eps``. Defaults to
            1e-8. ``0`` gives the exact entropies (an mmvlp option, off by
            default: it removes the official ``~2**group_size * eps *
            log(1/eps)`` bias per group, which matters only when comparing
            to exact entropies, e.g. in tests).
        eps_style (str): ``'qlip'`` (default): ``entr(p + eps)``;
            ``'bsq-vit'``: ``-p log(p + eps)``.
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
                 entropy_weight: float = 1.0,
                 commitment_weight: float = 0.0,
                 per_sample_entropy: str = 'group',
                 entropy_eps: float = 1e-8,
                 eps_style: str = 'qlip',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_args(code_dims, in_dims, group_size, inv_temperature,
                    per_sample_entropy, entropy_eps, eps_style)
        self.code_dims = code_dims
        self.in_dims = in_dims
        self.group_size = group_size
        self.num_groups = code_dims // group_size
        self.inv_temperature = float(inv_temperature)
        self.per_sample_weight = per_sample_weight
        self.codebook_weight = codebook_weight
        self.entropy_weight = entropy_weight
        self.commitment_weight = commitment_weight
        self.per_sample_entropy = per_sample_entropy
        self.entropy_eps = float(entropy_eps)
        self.eps_style = eps_style
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

    @property
    def bit_order(self) -> str:
        """str: How ids pack the bits (dimension 0 most significant)."""
        return 'big-endian'

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize channels-last vectors.

        Args:
            z (Tensor): Shape ``(..., in_dims)`` if ``in_dims`` is set,
                else ``(..., code_dims)``.

        Returns:
            QuantizerOutput: ``quantized`` has the shape and dtype of ``z``;
            ``indices`` are the big-endian ids; ``losses`` holds
            ``'per_sample_entropy'``, ``'codebook_entropy'`` and
            ``'commitment'`` (unweighted, float32); ``loss`` is the weighted
            total; ``stats`` holds ``'perplexity'`` (exp of the
            codebook-entropy estimate), ``'used_codes'`` (distinct ids in
            the batch) and ``'bit_balance'`` (fraction of positive bits).
        """
        width = self.code_dims if self.in_dims is None else self.in_dims
        check_last_dim(z, width, 'z')
        with fp32_region(z.device):
            h = z.float()
            if self.in_proj is not None:
                h = F.linear(h, self.in_proj.weight.float(),
                             self.in_proj.bias.float())
            u = F.normalize(h, p=2, dim=-1)
            bits = sign_bits(u.detach())
            signs = bits.float() * 2 - 1
            quantized = (u + (signs - u).detach()) * self.scale
            indices = bits_to_indices(bits)
            per_sample, codebook = self.entropy_terms(u)
            commitment = (quantized.detach() - u).pow(2).sum(-1).mean()
            entropy_term = (self.per_sample_weight * per_sample -
                            self.codebook_weight * codebook)
            loss = (self.commitment_weight * commitment + self.entropy_weight *
                    entropy_term / self.inv_temperature)
        if self.out_proj is not None:
            quantized = self.out_proj(
                quantized.to(self.out_proj.weight.dtype))
        quantized = quantized.to(z.dtype)
        stats = dict(
            perplexity=codebook.detach().exp(),
            used_codes=torch.tensor(
                indices.unique().numel(), device=z.device),
            bit_balance=bits.float().mean())
        return QuantizerOutput(
            quantized=quantized,
            indices=indices,
            loss=loss,
            losses=dict(per_sample_entropy=per_sample,
                        codebook_entropy=codebook, commitment=commitment),
            stats=stats)

    def entropy_terms(self, u: Tensor) -> Tuple[Tensor, Tensor]:
        """Soft-assignment entropies (float32, nats, autocast off).

        Args:
            u (Tensor): Unit vectors of shape ``(..., code_dims)``.

        Returns:
            Tuple[Tensor, Tensor]: Scalars ``per_sample_entropy`` and
            ``codebook_entropy`` (see the class docstring).
        """
        with fp32_region(u.device):
            log_probs = self._log_probs(u.float())
            count = log_probs.shape[0]
            per_sample = soft_entropy(log_probs, self.entropy_eps,
                                      self.eps_style).sum(-1).mean()
            # Batch mean of the probabilities, exact in log space: an
            # underflowed member probability cannot turn the mean into 0.
            log_mean = torch.logsumexp(log_probs, dim=0) - math.log(count)
            codebook = soft_entropy(log_mean, self.entropy_eps,
                                    self.eps_style).sum()
        return per_sample, codebook

    def _log_probs(self, u: Tensor) -> Tensor:
        """Log soft assignments ``(N, groups, entries)`` of ``(..., L)``."""
        flat = u.reshape(-1, self.code_dims)
        if self.per_sample_entropy == 'analytical':
            # P(bit = -1) = sigmoid(-4 T u_i / sqrt(L)), as the official.
            x = 4 * self.inv_temperature * self.scale * flat
            return torch.stack([F.logsigmoid(-x), F.logsigmoid(x)], dim=-1)
        groups = flat.reshape(-1, self.num_groups, self.group_size)
        logits = torch.einsum('ngc,kc->ngk', groups,
                              self.group_codebook.float())
        return (logits * (2 * self.inv_temperature)).log_softmax(dim=-1)

    # ------------------------------------------------------------------
    # ids <-> codes
    # ------------------------------------------------------------------
    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Big-endian ids of codes (only their signs matter, ``> 0``).

        Args:
            codes (Tensor): Shape ``(..., code_dims)``.

        Returns:
            Tensor: ``int64`` ids in ``[0, 2**code_dims)``, shape
            ``codes.shape[:-1]``.
        """
        check_last_dim(codes, self.code_dims, 'codes')
        return bits_to_indices(sign_bits(codes))

    def codes_to_group_indices(self, codes: Tensor) -> Tensor:
        """Big-endian ids of each group of ``group_size`` bits.

        Args:
            codes (Tensor): Shape ``(..., code_dims)``.

        Returns:
            Tensor: ``int64`` ids in ``[0, 2**group_size)``, shape
            ``(..., num_groups)``.
        """
        check_last_dim(codes, self.code_dims, 'codes')
        bits = sign_bits(codes).unflatten(-1,
                                          (self.num_groups, self.group_size))
        return bits_to_indices(bits)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Codes ``±1/sqrt(L)`` of ids, in the ``code_dims`` space.

        Args:
            indices (Tensor): Integer tensor of any shape ``S`` with values
                in ``[0, 2**code_dims)``.

        Returns:
            Tensor: Float32 codes of shape ``(*S, code_dims)``.
        """
        _check_range(indices, self.code_dims, 'indices')
        bits = indices_to_bits(indices, self.code_dims)
        return (bits.float() * 2 - 1) * self.scale

    def group_indices_to_codes(self, group_indices: Tensor) -> Tensor:
        """Codes of per-group ids (inverse of :meth:`codes_to_group_indices`).

        Args:
            group_indices (Tensor): Shape ``(..., num_groups)``, values in
                ``[0, 2**group_size)``.

        Returns:
            Tensor: Float32 codes of shape ``(..., code_dims)``.
        """
        check_last_dim(group_indices, self.num_groups, 'group_indices')
        _check_range(group_indices, self.group_size, 'group_indices')
        bits = indices_to_bits(group_indices, self.group_size).flatten(-2)
        return (bits.float() * 2 - 1) * self.scale

    def indices_to_group_indices(self, indices: Tensor) -> Tensor:
        """Split ids ``(...)`` into group ids ``(..., num_groups)``, group 0
        holding the most significant bits."""
        shifts = torch.arange(self.num_groups - 1, -1, -1,
                              device=indices.device) * self.group_size
        mask = (1 << self.group_size) - 1
        return (indices.long()[..., None] >> shifts) & mask

    def group_indices_to_indices(self, group_indices: Tensor) -> Tensor:
        """Join group ids ``(..., num_groups)`` into ids ``(...)``."""
        check_last_dim(group_indices, self.num_groups, 'group_indices')
        shifts = torch.arange(self.num_groups - 1, -1, -1,
                              device=group_indices.device) * self.group_size
        return (group_indices.long() << shifts).sum(-1)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Codes of ids mapped to the output space.

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


def kwargs_from_official(cfg: dict) -> dict:
    """:class:`BinarySphericalQuantizer` arguments of an official quantizer
    config (QLIP's ``quantizer_cfg`` in ``config.json``, or bsq-vit's
    ``BinarySphericalQuantizer`` arguments).

    QLIP spells the entropy weights ``gamma_0``/``gamma_1`` (and smooths
    with ``entr(p + eps)``), bsq-vit ``gamma0``/``gamma``/``zeta`` (and
    ``-p log(p + eps)``); ``eps_style`` follows the spelling. Settings
    mmvlp does not implement are refused: hard entropy
    (``soft_entropy=False``), ``l2_norm=False`` (mmvlp always quantizes on
    the sphere) and ``cb_entropy_compute='nce'``.

    Args:
        cfg (dict): The official keyword arguments.

    Returns:
        dict: Keyword arguments for :class:`BinarySphericalQuantizer`.
    """
    cfg = dict(cfg)
    if not cfg.pop('soft_entropy', True):
        raise ValueError('soft_entropy=False (hard entropy) is not '
                         'implemented in mmvlp; use the soft entropy.')
    if not cfg.pop('l2_norm', True):
        raise ValueError('l2_norm=False is not supported: mmvlp quantizes '
                         'l2-normalised vectors to codes scaled by '
                         '1/sqrt(L).')
    if cfg.pop('cb_entropy_compute', 'group') != 'group':
        raise ValueError("only cb_entropy_compute='group' is implemented")
    cfg.pop('input_format', None)  # mmvlp is channels-last
    bsq_vit = 'gamma0' in cfg or 'zeta' in cfg
    names = dict(embed_dim='code_dims', group_size='group_size',
                 inv_temperature='inv_temperature', beta='commitment_weight',
                 gamma_0='per_sample_weight', gamma0='per_sample_weight',
                 gamma_1='codebook_weight', gamma='codebook_weight',
                 zeta='entropy_weight',
                 persample_entropy_compute='per_sample_entropy')
    unknown = sorted(set(cfg) - set(names))
    if unknown:
        raise ValueError(f'unknown official BSQ arguments {unknown}')
    kwargs = {names[key]: value for key, value in cfg.items()}
    kwargs['eps_style'] = 'bsq-vit' if bsq_vit else 'qlip'
    if bsq_vit:  # bsq-vit's default temperature
        kwargs.setdefault('inv_temperature', 1.)
    else:  # QLIP's default width (its other defaults are mmvlp's)
        kwargs.setdefault('code_dims', 18)
    return kwargs


def _check_range(indices: Tensor, num_bits: int, name: str) -> None:
    """Raise ``ValueError`` unless integer ``indices`` lie in
    ``[0, 2**num_bits)`` (one host read; used on decoding paths only)."""
    if indices.is_floating_point() or indices.is_complex():
        raise ValueError(f'{name} must be an integer tensor, got '
                         f'{indices.dtype}')
    if indices.numel() and (int(indices.min()) < 0 or
                            int(indices.max()) >= 2**num_bits):
        raise ValueError(
            f'{name} must lie in [0, 2**{num_bits}), got values in '
            f'[{int(indices.min())}, {int(indices.max())}]')


def _check_args(code_dims: int, in_dims: Optional[int], group_size: int,
                inv_temperature: float, per_sample_entropy: str,
                entropy_eps: float, eps_style: str) -> None:
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
    if not inv_temperature > 0:
        raise ValueError(f'inv_temperature must be > 0, got '
                         f'{inv_temperature}')
    if per_sample_entropy not in PER_SAMPLE_MODES:
        raise ValueError(f'per_sample_entropy must be one of '
                         f'{PER_SAMPLE_MODES}, got {per_sample_entropy!r}')
    if not entropy_eps >= 0:
        raise ValueError(f'entropy_eps must be >= 0, got {entropy_eps}')
    if eps_style not in EPS_STYLES:
        raise ValueError(f'eps_style must be one of {EPS_STYLES}, got '
                         f'{eps_style!r}')
