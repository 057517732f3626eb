"""BinarySphericalQuantizer against a reference written from the facts of
the official BSQ code (NVlabs/QLIP ``QLIP/bsq.py``, zhaoyue-zephyrus/bsq-vit
``transcoder/models/quantizer/bsq.py``), independently of mmvlp's code:

- ``u`` l2-normalised; ``zq = (u + (sign(u) - u).detach()) / sqrt(L)`` with
  ``sign(u) = +1 if u > 0 else -1``: the gradient to ``u`` is ``1/sqrt(L)``.
- ids are big-endian: ``sum_i bit_i * 2**(L - 1 - i)``; group ids likewise.
- group soft assignment ``softmax(2 T <u_g, c>)`` over the ``2**g`` sign
  vectors ``c / sqrt(L)``; analytical mode: ``p = sigmoid(-4 T u / sqrt(L))``
  per bit, ``prob = [p, 1 - p]``.
- ``per_sample = mean_n sum_g H(prob)``, ``codebook = sum_g H(mean_n prob)``
  with ``H = sum entr(p + eps)`` (QLIP) or ``-sum p log(p + eps)``
  (bsq-vit), ``eps = 1e-8``.
- ``loss = beta * mean_n ||zq.detach() - u||^2 + zeta * (gamma0 *
  per_sample - gamma * codebook) / T``.

The reference runs in float64, where none of these probabilities underflow,
so its values and gradients are the official ones without rounding.
"""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mmvlp.models.quantizers import (BinarySphericalQuantizer,
                                     NormEMAVectorQuantizer,
                                     kwargs_from_official)

EPS = 1e-8


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _reference(z, bits, group_size, inv_temperature, gamma0=1., gamma=1.,
               zeta=1., beta=0., eps=EPS, style='qlip', mode='group'):
    """Official BSQ on float64 inputs ``z`` (normalised here, as QLIP does
    before calling its quantizer). Returns quantized, loss and the terms."""
    u = F.normalize(z, dim=-1)
    sign = torch.where(u > 0, torch.ones_like(u), -torch.ones_like(u))
    quantized = (u + (sign - u).detach()) / math.sqrt(bits)
    if mode == 'group':
        codebook = torch.tensor(
            list(itertools.product([-1., 1.], repeat=group_size)),
            dtype=z.dtype) / math.sqrt(bits)
        groups = u.reshape(*u.shape[:-1], bits // group_size, group_size)
        distance = -2 * torch.einsum('...gc,dc->...gd', groups, codebook)
        prob = (-distance * inv_temperature).softmax(dim=-1)
    else:
        p = torch.sigmoid(-4 * u / math.sqrt(bits) * inv_temperature)
        prob = torch.stack([p, 1 - p], dim=-1)

    def entropy(q):
        if eps == 0:
            return -torch.special.xlogy(q, q).sum(-1)
        if style == 'qlip':
            return torch.special.entr(q + eps).sum(-1)
        return -(q * torch.log(q + eps)).sum(-1)

    per_sample = entropy(prob).sum(-1).mean()
    avg = prob.reshape(-1, *prob.shape[-2:]).mean(0)
    codebook_entropy = entropy(avg).sum()
    commitment = ((quantized.detach() - u)**2).sum(-1).mean()
    loss = beta * commitment + zeta * (
        gamma0 * per_sample - gamma * codebook_entropy) / inv_temperature
    return dict(quantized=quantized, loss=loss, per_sample=per_sample,
                codebook=codebook_entropy, commitment=commitment, prob=prob)


def _reference_ids(signs, num_bits):
    """Big-endian ids of ±1 rows, with Python integers."""
    return [sum(1 << (num_bits - 1 - i) for i, s in enumerate(row) if s > 0)
            for row in signs.tolist()]


def _both(z, bsq, **ref_kwargs):
    """mmvlp output and gradient vs the reference's for ``loss + <zq, w>``.
    """
    bits = bsq.code_dims
    weights = torch.linspace(-1, 1, bits)
    z_mine = z.float().clone().requires_grad_()
    out = bsq(z_mine)
    (out.loss + (out.quantized * weights).sum()).backward()
    z_ref = z.double().clone().requires_grad_()
    ref = _reference(z_ref, bits, bsq.group_size, bsq.inv_temperature,
                     **ref_kwargs)
    (ref['loss'] + (ref['quantized'] * weights.double()).sum()).backward()
    return out, z_mine.grad, ref, z_ref.grad


# --------------------------------------------------------------------------
# Straight-through gradient, sign(0), bit order
# --------------------------------------------------------------------------


@pytest.mark.parametrize('bits,group_size', [(8, 4), (18, 9), (36, 12)])
def test_straight_through_gradient_is_one_over_sqrt_bits(bits, group_size):
    bsq = BinarySphericalQuantizer(bits, group_size=group_size)
    u = F.normalize(_randn(5, bits, seed=bits), dim=-1).requires_grad_()
    weights = _randn(5, bits, seed=1)
    (bsq(u).quantized * weights).sum().backward()
    # On the sphere the normalisation passes tangent gradients unchanged:
    # the gradient is the tangent part of weights / sqrt(L).
    tangent = weights - (weights * u).sum(-1, keepdim=True) * u
    torch.testing.assert_close(u.grad, tangent.detach() / math.sqrt(bits),
                               atol=1e-6, rtol=1e-5)
    u_ref = u.detach().double().requires_grad_()
    ref = _reference(u_ref, bits, group_size, 100.)
    (ref['quantized'] * weights.double()).sum().backward()
    torch.testing.assert_close(u.grad.double(), u_ref.grad, atol=1e-6,
                               rtol=1e-5)


def test_sign_of_zero_is_minus_one():
    bsq = BinarySphericalQuantizer(6, group_size=3)
    z = torch.tensor([[0., 0., 1., 0., -1., 0.]])
    out = bsq(z)
    expected = torch.tensor([[-1., -1., 1., -1., -1., -1.]]) / math.sqrt(6)
    torch.testing.assert_close(out.quantized, expected)
    assert out.indices.item() == 0b001000
    assert bsq.codes_to_indices(torch.zeros(1, 6)).item() == 0


@pytest.mark.parametrize('bits,group_size', [(8, 8), (18, 9), (28, 14),
                                             (36, 12), (62, 2)])
def test_big_endian_exact_ids(bits, group_size):
    bsq = BinarySphericalQuantizer(bits, group_size=group_size)
    z = _randn(40, bits, seed=bits)
    z[0] = 1.  # the largest id, 2**L - 1 (exact, far above 2**24)
    z[1, :-1], z[1, -1] = 1., -1.  # 2**L - 2
    out = bsq(z)
    signs = torch.where(z > 0, 1, -1)
    expected = _reference_ids(signs, bits)
    assert out.indices.dtype == torch.long
    assert out.indices.tolist() == expected
    assert expected[0] == 2**bits - 1 and expected[1] == 2**bits - 2
    codes = bsq.indices_to_codes(out.indices)
    torch.testing.assert_close(codes, signs.float() / math.sqrt(bits))
    assert torch.equal(bsq.codes_to_indices(codes), out.indices)
    # Group ids: big-endian inside each group, group 0 first.
    groups = bsq.codes_to_group_indices(out.quantized)
    assert groups.shape == (40, bits // group_size)
    for g in range(bits // group_size):
        part = signs[:, g * group_size:(g + 1) * group_size]
        assert groups[:, g].tolist() == _reference_ids(part, group_size)
    assert torch.equal(bsq.indices_to_group_indices(out.indices), groups)
    assert torch.equal(bsq.group_indices_to_indices(groups), out.indices)
    torch.testing.assert_close(bsq.group_indices_to_codes(groups), codes)


def test_decoding_refuses_ids_out_of_range():
    bsq = BinarySphericalQuantizer(8, group_size=4)
    with pytest.raises(ValueError, match=r'indices must lie in \[0, 2\*\*8'):
        bsq.indices_to_codes(torch.tensor([256]))
    with pytest.raises(ValueError, match='group_indices must lie in'):
        bsq.group_indices_to_codes(torch.tensor([[16, 0]]))
    with pytest.raises(ValueError, match='integer tensor'):
        bsq.indices_to_codes(torch.tensor([1.]))


# --------------------------------------------------------------------------
# Entropy terms, commitment and the total loss
# --------------------------------------------------------------------------


@pytest.mark.parametrize('bits,group_size', [(18, 9), (8, 8), (12, 3),
                                             (28, 14), (36, 12)])
@pytest.mark.parametrize('inv_temperature', [1., 100.])
@pytest.mark.parametrize('mode,style', [('group', 'qlip'),
                                        ('group', 'bsq-vit'),
                                        ('analytical', 'qlip')])
def test_loss_matches_reference(bits, group_size, inv_temperature, mode,
                                style):
    weights = dict(gamma0=0.7, gamma=1.3, zeta=0.5, beta=0.25)
    bsq = BinarySphericalQuantizer(
        bits, group_size=group_size, inv_temperature=inv_temperature,
        per_sample_weight=0.7, codebook_weight=1.3, entropy_weight=0.5,
        commitment_weight=0.25, per_sample_entropy=mode, eps_style=style)
    z = _randn(4, 12, bits, seed=bits + group_size)
    out, grad, ref, ref_grad = _both(z, bsq, mode=mode, style=style,
                                     **weights)
    for name, key in (('per_sample', 'per_sample_entropy'),
                      ('codebook', 'codebook_entropy'),
                      ('commitment', 'commitment')):
        assert out.losses[key].dtype == torch.float32
        assert out.losses[key].item() == pytest.approx(
            ref[name].item(), rel=2e-6, abs=2e-6), name
    assert out.loss.item() == pytest.approx(ref['loss'].item(), rel=1e-5,
                                            abs=1e-7)
    torch.testing.assert_close(out.quantized.double(), ref['quantized'],
                               atol=1e-7, rtol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4,
                               atol=1e-6 * ref_grad.abs().max().item())


def test_default_loss_is_qlips():
    """QLIP's constructor defaults: beta 0, gamma0 = gamma = 1, T = 100, and
    the entropy term divided by T."""
    bsq = BinarySphericalQuantizer(18, group_size=9)
    z = _randn(3, 16, 18, seed=3)
    out, _, ref, _ = _both(z, bsq)
    assert bsq.inv_temperature == 100. and bsq.commitment_weight == 0.
    assert out.loss.item() == pytest.approx(ref['loss'].item(), rel=1e-5)
    expected = (out.losses['per_sample_entropy'] -
                out.losses['codebook_entropy']) / 100.
    torch.testing.assert_close(out.loss, expected)


# --------------------------------------------------------------------------
# Collapsed and nearly collapsed batches
# --------------------------------------------------------------------------


def _collapsed(bits, near, seed=0):
    """A batch of 48 tokens on one code (``near``: small noise around it)."""
    base = _randn(1, bits, seed=seed).expand(48, bits).clone()
    if near:
        base = base + 0.02 * _randn(48, bits, seed=seed + 1)
    return base.view(4, 12, bits)


@pytest.mark.parametrize('bits,group_size', [(18, 9), (8, 8), (28, 14),
                                             (36, 12)])
@pytest.mark.parametrize('inv_temperature', [1., 100.])
@pytest.mark.parametrize('near', [False, True])
def test_collapsed_batch_finite_and_official(bits, group_size,
                                             inv_temperature, near):
    z = _collapsed(bits, near, seed=bits)
    for eps in (EPS, 0.):  # official smoothing, and exact entropies
        for gamma0, gamma in ((1., 0.), (0., 1.), (1., 1.)):
            bsq = BinarySphericalQuantizer(
                bits, group_size=group_size,
                inv_temperature=inv_temperature, per_sample_weight=gamma0,
                codebook_weight=gamma, entropy_eps=eps)
            out, grad, ref, ref_grad = _both(z, bsq, gamma0=gamma0,
                                             gamma=gamma, eps=eps)
            # The official values are finite here (float64, no underflow).
            assert ref['prob'].min() > 0
            assert torch.isfinite(out.loss) and torch.isfinite(grad).all()
            assert out.losses['per_sample_entropy'].item() == pytest.approx(
                ref['per_sample'].item(), rel=1e-5, abs=2e-6)
            assert out.losses['codebook_entropy'].item() == pytest.approx(
                ref['codebook'].item(), rel=1e-5, abs=2e-6)
            torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-3,
                                       atol=1e-6)


def test_collapsed_batch_gradient_reaches_projection():
    """Through the input projection too (where a collapsed encoder sits)."""
    torch.manual_seed(0)
    bsq = BinarySphericalQuantizer(18, in_dims=32, group_size=9,
                                   entropy_eps=0.)
    z = _randn(1, 32).expand(64, 32).clone()
    out = bsq(z)
    assert out.stats['used_codes'].item() == 1
    out.loss.backward()
    assert torch.isfinite(bsq.in_proj.weight.grad).all()
    # The batch is collapsed enough that the plain mean of the probabilities
    # underflows in float32: xlogy of that mean has NaN gradients.
    u = F.normalize(bsq.in_proj(z), dim=-1).detach().requires_grad_()
    log_probs = bsq._log_probs(u)
    mean = log_probs.exp().mean(0)
    assert (mean == 0).any()
    (-torch.special.xlogy(mean, mean)).sum().backward()
    assert torch.isnan(u.grad).any()


# --------------------------------------------------------------------------
# Precision under autocast
# --------------------------------------------------------------------------


def test_bsq_float32_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    bsq = BinarySphericalQuantizer(18, in_dims=64, group_size=9)
    z = _randn(8, 64, 64, seed=5)
    reference = bsq(z)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = bsq(z)
        # What autocast alone would compute: the projection in bf16.
        naive = F.linear(z, bsq.in_proj.weight, bsq.in_proj.bias)
        naive_logits = torch.einsum(
            'ngc,kc->ngk', F.normalize(naive.float(), dim=-1).view(
                -1, 2, 9), bsq.group_codebook)
    assert naive.dtype == torch.bfloat16
    assert naive_logits.dtype == torch.bfloat16
    assert not torch.equal(bsq.codes_to_indices(naive.float()),
                           reference.indices)  # autocast alone flips bits
    assert torch.equal(out.indices, reference.indices)
    for key, value in reference.losses.items():
        assert out.losses[key].dtype == torch.float32
        torch.testing.assert_close(out.losses[key], value, rtol=0, atol=0)
    torch.testing.assert_close(out.loss, reference.loss, rtol=0, atol=0)
    assert out.quantized.dtype == z.dtype


def test_vq_assignment_float32_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    vq = NormEMAVectorQuantizer(num_codes=512, code_dims=32,
                                kmeans_init=False).eval()
    z = _randn(4096, 32, seed=6)
    reference = vq(z)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = vq(z)
        naive = (F.normalize(z, dim=-1) @ vq.codebook.t()).argmax(-1)
    assert not torch.equal(naive, reference.indices)
    assert torch.equal(out.indices, reference.indices)
    assert out.quantized.dtype == z.dtype
    torch.testing.assert_close(out.loss, reference.loss, rtol=0, atol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match='per_sample_entropy must be one of'):
        BinarySphericalQuantizer(8, group_size=4, per_sample_entropy='hard')
    with pytest.raises(ValueError, match='eps_style must be one of'):
        BinarySphericalQuantizer(8, group_size=4, eps_style='x')
    with pytest.raises(ValueError, match='entropy_eps must be >= 0'):
        BinarySphericalQuantizer(8, group_size=4, entropy_eps=-1.)
    with pytest.raises(ValueError, match='inv_temperature must be > 0'):
        BinarySphericalQuantizer(8, group_size=4, inv_temperature=0.)


def test_kwargs_from_official_configs():
    qlip = dict(embed_dim=28, group_size=14, soft_entropy=True, beta=0.,
                gamma_0=1., gamma_1=1., input_format='blc',
                persample_entropy_compute='group', l2_norm=True,
                inv_temperature=100.)
    assert kwargs_from_official(qlip) == dict(
        code_dims=28, group_size=14, commitment_weight=0.,
        per_sample_weight=1., codebook_weight=1., per_sample_entropy='group',
        inv_temperature=100., eps_style='qlip')
    assert kwargs_from_official({})['code_dims'] == 18  # QLIP's default
    bsq_vit = dict(embed_dim=18, beta=0., gamma0=1., gamma=1., zeta=1.,
                   group_size=9, persample_entropy_compute='analytical',
                   cb_entropy_compute='group', l2_norm=True)
    kwargs = kwargs_from_official(bsq_vit)
    assert kwargs['eps_style'] == 'bsq-vit'
    assert kwargs['inv_temperature'] == 1.  # bsq-vit's default
    assert kwargs['entropy_weight'] == 1.
    bsq = BinarySphericalQuantizer(**kwargs)
    z = _randn(2, 8, 18, seed=9)
    out, _, ref, _ = _both(z, bsq, mode='analytical', style='bsq-vit')
    assert out.loss.item() == pytest.approx(ref['loss'].item(), rel=1e-5)
    for bad, match in ((dict(soft_entropy=False), 'hard entropy'),
                       (dict(l2_norm=False), 'l2_norm=False'),
                       (dict(cb_entropy_compute='nce'), 'cb_entropy_compute'),
                       (dict(codebook_size=4), 'unknown official')):
        with pytest.raises(ValueError, match=match):
            kwargs_from_official(bad)
