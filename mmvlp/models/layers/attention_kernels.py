"""The attention kernel, chosen per device, precision and sequence length.

Every attention of mmvlp goes through :func:`attention`, which computes
``softmax(q k^T / sqrt(d) + mask) v`` with one of two kernels:

* ``'sdpa'``: :func:`torch.nn.functional.scaled_dot_product_attention`
  (flash / memory-efficient / cuDNN on GPUs, flash or math on CPUs);
* ``'explicit'``: batched GEMMs, the scores ``q k^T`` and the softmax in
  fp32, the weighted sum and the backward GEMMs in the inputs' precision
  (:func:`explicit_attention`).

``'auto'`` (the default) takes the explicit kernel on CPUs for bf16/fp16
inputs of up to :data:`EXPLICIT_MAX_SCORES` scores per head, where it is the
faster one, and SDPA everywhere else: on a CPU with AVX512-BF16, base
shapes (12 heads of 64), SDPA's CPU flash kernel takes about twice the
explicit kernel's time in bf16 at 197 tokens, 1.3-1.4x at 261 and 577, and
is the faster one from about 769 tokens on (the ``(N, N)`` scores no longer
fit the caches; flash never stores them); in fp32, and on GPUs, SDPA's
fused kernels are faster (``benchmarks/attention.py``,
``docs/benchmarks.md``).

:func:`attention_kernel` overrides the choice for a block of code (tests,
benchmarks, A/B runs)::

    with attention_kernel('sdpa'):
        model(inputs)
"""
import contextlib
import math
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

#: Kernels :func:`attention_kernel` accepts.
KERNELS = ('auto', 'sdpa', 'explicit')
#: Largest ``N_query * N_key`` for which ``'auto'`` picks the explicit kernel
#: on CPU (between 577^2, where it is faster, and 769^2, where flash is).
EXPLICIT_MAX_SCORES = 640 * 640
_LOW_PRECISION = (torch.bfloat16, torch.float16)
_kernel = 'auto'


@contextlib.contextmanager
def attention_kernel(name: str) -> Iterator[None]:
    """Use kernel ``name`` (one of :data:`KERNELS`) inside the block.

    Args:
        name (str): ``'auto'``, ``'sdpa'`` or ``'explicit'``.
    """
    global _kernel
    if name not in KERNELS:
        raise ValueError(f'Unknown attention kernel {name!r}; choose one of '
                         f'{KERNELS}.')
    previous, _kernel = _kernel, name
    try:
        yield
    finally:
        _kernel = previous


def _compute_dtype(q: torch.Tensor) -> torch.dtype:
    """The precision the GEMMs of attention run in (autocast's, if on)."""
    device = q.device.type
    if q.is_floating_point() and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return q.dtype


def choose_kernel(q: torch.Tensor, k: torch.Tensor) -> str:
    """The kernel :func:`attention` runs for these queries and keys:
    ``'explicit'`` or ``'sdpa'`` (see the module's docstring)."""
    if _kernel != 'auto':
        return _kernel
    if (q.device.type == 'cpu' and _compute_dtype(q) in _LOW_PRECISION
            and q.shape[-2] * k.shape[-2] <= EXPLICIT_MAX_SCORES):
        return 'explicit'
    return 'sdpa'


class _ExplicitAttention(torch.autograd.Function):
    """:func:`explicit_attention` with a hand-written backward: the score
    gradients are formed in fp32 by one fused softmax backward and cast
    once for the two low-precision GEMMs of ``dq`` and ``dk``."""

    @staticmethod
    def forward(ctx, q, k, v, attn_mask, dropout_p):
        scale = 1 / math.sqrt(q.shape[-1])
        wide = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(q.device.type, enabled=False):
            scores = torch.matmul(q.to(wide, copy=True).mul_(scale),
                                  k.to(wide).transpose(-1, -2))
            if attn_mask is not None:
                if attn_mask.dtype == torch.bool:
                    # Adding a small additive mask is ~7x faster than
                    # masked_fill_ with a broadcast boolean one on CPU.
                    attn_mask = torch.zeros(
                        attn_mask.shape, dtype=wide,
                        device=attn_mask.device).masked_fill_(
                            ~attn_mask, float('-inf'))
                scores.add_(attn_mask)
            probs = torch.softmax(scores, dim=-1)
            del scores
            keep = None
            if dropout_p > 0:
                keep = torch.empty_like(probs, dtype=torch.bool).bernoulli_(
                    1 - dropout_p)
                dropped = (probs * keep).mul_(1 / (1 - dropout_p)).to(v.dtype)
            else:
                dropped = probs.to(v.dtype)
            out = torch.matmul(dropped, v)
        ctx.save_for_backward(q, k, v, probs, dropped, keep)
        ctx.scale, ctx.dropout_p = scale, dropout_p
        ctx.mask_shape = None if attn_mask is None or \
            attn_mask.dtype == torch.bool else attn_mask.shape
        ctx.mask_dtype = None if attn_mask is None else attn_mask.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, probs, dropped, keep = ctx.saved_tensors
        with torch.autocast(q.device.type, enabled=False):
            grad_out = grad_out.to(v.dtype)
            grad_v = torch.matmul(dropped.transpose(-1, -2), grad_out)
            grad_probs = torch.matmul(grad_out, v.transpose(-1, -2)).to(
                probs.dtype)
            if keep is not None:
                grad_probs.mul_(keep).mul_(1 / (1 - ctx.dropout_p))
            grad_scores = torch._softmax_backward_data(
                grad_probs, probs, -1, probs.dtype)
            del grad_probs
            grad_mask = None
            if ctx.needs_input_grad[3] and ctx.mask_shape is not None:
                grad_mask = grad_scores.sum_to_size(ctx.mask_shape).to(
                    ctx.mask_dtype)
            grad_scores = grad_scores.mul_(ctx.scale).to(q.dtype)
            grad_q = torch.matmul(grad_scores, k)
            grad_k = torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, grad_mask, None


def explicit_attention(q: torch.Tensor,
                       k: torch.Tensor,
                       v: torch.Tensor,
                       attn_mask: Optional[torch.Tensor] = None,
                       dropout_p: float = 0.) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + mask) v`` as batched GEMMs with the
    scores and the softmax in fp32.

    The scores ``q k^T`` are computed in fp32 (a bf16 GEMM would round them
    to 8 bits of mantissa before the softmax: about 4x the output error of
    a fused kernel at BEiT-3's logit scales), masked and normalised in fp32;
    the probabilities are cast once to the inputs' precision for the
    weighted sum of values and the backward GEMMs (``dv``, ``dp``, ``dq``,
    ``dk``), whose results are as accurate as SDPA's fused kernels
    (``tests/test_bf16_parity.py``). Under autocast the inputs are first
    cast to autocast's precision. A row whose keys are all masked gives
    NaN, as the official BEiT-3 code does.

    Args:
        q (Tensor): Queries ``(..., N, d)``.
        k (Tensor): Keys ``(..., M, d)``.
        v (Tensor): Values ``(..., M, d_v)``.
        attn_mask (Tensor, optional): Broadcastable to ``(..., N, M)``;
            boolean (True = may attend) or additive float, as SDPA takes.
        dropout_p (float): Dropout on the probabilities.

    Returns:
        Tensor: ``(..., N, d_v)`` in the inputs' (or autocast's) precision.
    """
    dtype = _compute_dtype(q)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    return _ExplicitAttention.apply(q, k, v, attn_mask, dropout_p)


def attention(q: torch.Tensor,
              k: torch.Tensor,
              v: torch.Tensor,
              attn_mask: Optional[torch.Tensor] = None,
              dropout_p: float = 0.) -> torch.Tensor:
    """Scaled dot-product attention with the kernel of
    :func:`choose_kernel`; arguments and result as
    :func:`torch.nn.functional.scaled_dot_product_attention` (``(B, H, N,
    d)`` queries, ``(B, H, M, d)`` keys and values)."""
    if choose_kernel(q, k) == 'explicit':
        return explicit_attention(q, k, v, attn_mask, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                          dropout_p=dropout_p)
