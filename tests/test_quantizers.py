"""NormEMAVectorQuantizer (BEiT v2 VQ-KD) and BinarySphericalQuantizer."""
import itertools
import math
import os

import pytest
from helpers.ports import free_port
import torch
import torch.nn.functional as F

from mmvlp.models.quantizers import (BinarySphericalQuantizer,
                                     NormEMAVectorQuantizer, QuantizerOutput)
from mmvlp.registry import MODELS


def _vq(**kwargs):
    cfg = dict(num_codes=16, code_dims=8, kmeans_init=False)
    cfg.update(kwargs)
    return NormEMAVectorQuantizer(**cfg)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _clusters(directions, per_cluster, noise=0.02, seed=0):
    """``per_cluster`` noisy unit vectors around each row of ``directions``."""
    x = directions.repeat_interleave(per_cluster, 0)
    x = x + noise * _randn(*x.shape, seed=seed)
    return F.normalize(x, dim=-1)


# --------------------------------------------------------------------------
# NormEMAVectorQuantizer
# --------------------------------------------------------------------------


def test_vq_output_and_registry():
    vq = MODELS.build(
        dict(type='mmvlp.NormEMAVectorQuantizer', num_codes=16, code_dims=8,
             kmeans_init=False)).eval()
    assert isinstance(vq, NormEMAVectorQuantizer) and vq.vocab_size == 16
    out = vq(_randn(2, 3, 4, 8))
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == (2, 3, 4, 8)
    assert out.indices.shape == (2, 3, 4) and out.indices.dtype == torch.long
    assert torch.allclose(out.loss, out.losses['commitment'])
    assert 'codebook' not in dict(vq.named_parameters())
    assert set(vq.state_dict()) == {'codebook', 'cluster_size', 'initted'}
    counts = torch.bincount(out.indices.flatten(), minlength=16).double()
    p = counts / counts.sum()
    perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
    assert torch.allclose(out.stats['perplexity'].double(), perplexity)
    assert out.stats['used_codes'] == (counts > 0).sum()


def test_vq_straight_through_gradient():
    torch.manual_seed(0)
    vq = _vq().train()
    z = _randn(2, 5, 8).requires_grad_()
    vq(z).quantized.sum().backward()
    z_ref = z.detach().clone().requires_grad_()
    F.normalize(z_ref, dim=-1).sum().backward()
    assert torch.allclose(z.grad, z_ref.grad, atol=1e-6)


def test_vq_nearest_code_and_commitment():
    torch.manual_seed(0)
    vq = _vq(num_codes=32, beta=0.25).eval()
    z = _randn(4, 6, 8)
    out = vq(z)
    z_n = F.normalize(z, dim=-1)
    expected = (z_n @ vq.codebook.t()).argmax(-1)
    assert torch.equal(out.indices, expected)
    codes = vq.codebook[expected]
    assert torch.allclose(out.quantized, codes, atol=1e-6)
    assert torch.allclose(vq.indices_to_codes(out.indices), codes)
    commitment = ((codes - z_n)**2).mean()
    assert torch.allclose(out.losses['commitment'], commitment)
    assert torch.allclose(out.loss, 0.25 * commitment)


def test_assign_by_cosine_in_row_blocks_equals_argmax(monkeypatch):
    from mmvlp.models.quantizers import norm_ema
    torch.manual_seed(0)
    x = F.normalize(torch.randn(37, 8), dim=-1)
    codebook = F.normalize(torch.randn(16, 8), dim=-1)
    expected = (x @ codebook.t()).argmax(-1)
    # 5-row blocks: several blocks and a short last one.
    monkeypatch.setattr(norm_ema, '_ASSIGN_BLOCK_ELEMENTS', 5 * 16)
    assert torch.equal(norm_ema.assign_by_cosine(x, codebook), expected)
    # A tie goes to the first maximal code, as with argmax.
    twins = torch.cat([codebook[:3], codebook[2:3]])
    assert norm_ema.assign_by_cosine(codebook[2:3], twins).item() == 2


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


def test_vq_ema_update_matches_hand_computation():
    decay = 0.9
    codebook = _unit([1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1])
    z = _unit([1, .2, 0], [.9, -.3, .1], [.1, 1, .2], [0, .1, 1],
              [.2, .8, -.1])
    vq = NormEMAVectorQuantizer(
        num_codes=4, code_dims=3, decay=decay, kmeans_init=False).train()
    vq.codebook.copy_(codebook)
    vq.cluster_size.copy_(torch.tensor([1., 2., 3., 4.]))
    out = vq(z.float()[None])

    # Explicit loops: nearest code, counts, sums, normalised-mean EMA.
    assign = [max(range(4), key=lambda k: float(z[n] @ codebook[k]))
              for n in range(len(z))]
    assert out.indices[0].tolist() == assign == [0, 0, 1, 2, 1]
    new_codebook = codebook.clone()
    new_sizes = []
    for k in range(4):
        members = [z[n] for n in range(len(z)) if assign[n] == k]
        new_sizes.append(decay * (k + 1) + (1 - decay) * len(members))
        if members:
            mean = sum(members) / len(members)
            mean = mean / mean.norm()
            row = decay * codebook[k] + (1 - decay) * mean
            new_codebook[k] = row / row.norm()
    assert torch.allclose(vq.cluster_size.double(),
                          torch.tensor(new_sizes, dtype=torch.float64))
    assert torch.allclose(vq.codebook.double(), new_codebook, atol=1e-6)
    assert torch.equal(vq.codebook[3], codebook[3].float())  # unused: kept
    assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(4))


def test_vq_training_step_matches_mmpretrain():
    # mmpretrain is pinned (requirements): a hard import, never a skip.
    from mmpretrain.models.utils import vector_quantizer as reference_module
    torch.manual_seed(0)
    reference = reference_module.NormEMAVectorQuantizer(
        num_embed=32, embed_dims=8, beta=0.5, kmeans_init=False).train()
    vq = _vq(num_codes=32, beta=0.5).train()
    vq.codebook.copy_(reference.embedding.weight.data)
    for step in range(3):
        z = _randn(2, 8, 4, 4, seed=step)  # the reference is channels-first
        ref_q, ref_loss, ref_idx = reference(z)
        out = vq(z.permute(0, 2, 3, 1))
        assert torch.equal(out.indices.flatten(), ref_idx)
        assert torch.allclose(out.quantized.permute(0, 3, 1, 2), ref_q)
        assert torch.allclose(out.loss, ref_loss)
        assert torch.allclose(vq.codebook, reference.embedding.weight,
                              atol=1e-6)
        assert torch.allclose(vq.cluster_size, reference.cluster_size)


def test_vq_kmeans_init_and_eval_is_frozen():
    torch.manual_seed(0)
    directions = torch.eye(8)[:4] + 0.1 * torch.eye(8)[4:]
    directions = F.normalize(directions, dim=-1)
    z = _clusters(directions, per_cluster=16)[torch.randperm(64)]
    # Twice as many codes as clusters: random-sample init then covers every
    # cluster for any seed (with K == 4 k-means can park one centroid
    # between two clusters, a local optimum).
    vq = NormEMAVectorQuantizer(num_codes=8, code_dims=8, kmeans_iters=10)
    assert not vq.initted and torch.all(vq.codebook == 0)

    vq.eval()(z[None])  # eval never initialises
    assert not vq.initted and torch.all(vq.codebook == 0)

    out = vq.train()(z.view(4, 16, 8))
    assert vq.initted
    cos = vq.codebook @ directions.t()
    assert torch.all(cos.max(dim=0).values > 0.99)  # every cluster covered
    assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(8))
    # Converged k-means: each used row is the normalised mean of its members
    # (so the EMA step leaves it in place), and row counts sum to the batch.
    assign = (z @ vq.codebook.t()).argmax(-1)
    assert torch.equal(out.indices.flatten(), assign)
    for k in assign.unique():
        mean = F.normalize(z[assign == k].sum(0), dim=0)
        assert float(mean @ vq.codebook[k]) > 0.99999
    assert float(vq.cluster_size.sum()) == pytest.approx(64.)
    assert out.stats['used_codes'] == len(assign.unique())

    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq.eval()(_randn(3, 8, 8))
    for key, value in vq.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_vq_kmeans_init_with_fewer_vectors_than_codes():
    torch.manual_seed(0)
    z = F.normalize(_randn(5, 8), dim=-1)
    vq = NormEMAVectorQuantizer(num_codes=16, code_dims=8).train()
    vq(z)
    assert vq.initted
    # Every centroid is one of the (unit) batch vectors.
    assert torch.allclose((vq.codebook @ z.t()).max(dim=1).values,
                          torch.ones(16), atol=1e-5)


def test_vq_dead_code_restart():
    codebook = torch.eye(8)
    batches = [
        _clusters(torch.eye(8)[:2], per_cluster=6, seed=s) for s in range(3)
    ]

    vq = NormEMAVectorQuantizer(
        num_codes=8, code_dims=8, kmeans_init=False,
        dead_code_restart_steps=2).train()
    vq.codebook.copy_(codebook)
    first = vq(batches[0])
    assert first.stats['restarted_codes'] == 0
    assert torch.equal(vq.codebook[2:], codebook[2:])
    assert vq.unused_steps.tolist() == [0, 0] + [1] * 6
    second = vq(batches[1])
    assert second.stats['restarted_codes'] == 6
    assert vq.unused_steps.tolist() == [0] * 8
    # Re-seeded rows are (normalised) vectors of the current batch.
    match = (vq.codebook[2:] @ batches[1].t()).max(dim=1).values
    assert torch.allclose(match, torch.ones(6), atol=1e-6)
    assert not torch.allclose(vq.codebook[2:], codebook[2:])

    off = NormEMAVectorQuantizer(
        num_codes=8, code_dims=8, kmeans_init=False).train()
    off.codebook.copy_(codebook)
    for batch in batches:
        assert off(batch).stats['restarted_codes'] == 0
    assert torch.equal(off.codebook[2:], codebook[2:])
    assert not hasattr(off, 'unused_steps')


def test_vq_codebook_stats_and_reset():
    vq = NormEMAVectorQuantizer(num_codes=8, code_dims=8, kmeans_init=False)
    vq.codebook.copy_(torch.eye(8))
    assert vq.codebook_stats() == dict(
        usage=0.0, perplexity=0.0, dead_codes=8.0)
    # Window histogram [4, 2, 1, 1, 0, 0, 0, 0] over two forwards.
    vq.train()(torch.eye(8)[[0, 0, 1, 2]])
    vq.eval()(torch.eye(8)[[0, 0, 1, 3]][None])
    stats = vq.codebook_stats()
    assert stats['usage'] == 0.5 and stats['dead_codes'] == 4.0
    # H = 1/2 ln 2 + 1/4 ln 4 + 2/8 ln 8 = 1.75 ln 2
    assert stats['perplexity'] == pytest.approx(2**1.75, rel=1e-5)
    assert vq.usage_counts.tolist() == [4, 2, 1, 1, 0, 0, 0, 0]
    vq.reset_usage()
    assert vq.codebook_stats() == dict(
        usage=0.0, perplexity=0.0, dead_codes=8.0)
    vq(torch.eye(8)[[5]])
    assert vq.codebook_stats() == dict(
        usage=1 / 8, perplexity=1.0, dead_codes=7.0)


# --------------------------------------------------------------------------
# Distributed consistency of the VQ (2 gloo processes on CPU)
# --------------------------------------------------------------------------


def _dist_batches():
    torch.manual_seed(123)
    return [_randn(3, 5, 8, seed=1), _randn(2, 7, 8, seed=2)]


def _dist_worker(rank, world_size, port, out_dir):
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=world_size)
    try:
        batch = _dist_batches()[rank]
        torch.manual_seed(0)  # same initial codebook on both ranks
        ema = _vq(decay=0.9).train()
        ema(batch)
        # Different RNG state per rank: only a broadcast keeps them equal.
        torch.manual_seed(100 + rank)
        km = _vq(kmeans_init=True).train()
        km(batch)
        torch.manual_seed(0)
        dead = _vq(num_codes=64, dead_code_restart_steps=1).train()
        torch.manual_seed(200 + rank)  # different re-seeding draws per rank
        restarted = dead(batch).stats['restarted_codes']
        torch.save(
            dict(ema=ema.state_dict(), km=km.state_dict(),
                 dead=dead.state_dict(), restarted=restarted),
            os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _run_workers(fn, nprocs, args, timeout=60.):
    """Run ``fn(rank, *args)`` in ``nprocs`` processes; fail after timeout.

    ``fork`` (where available) avoids re-importing torch and mmvlp in every
    child, which takes most of the time with ``spawn`` on a small machine.
    """
    import time

    import torch.multiprocessing as mp
    method = 'fork' if 'fork' in mp.get_all_start_methods() else 'spawn'
    context = mp.start_processes(
        fn, args=args, nprocs=nprocs, join=False, start_method=method)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'distributed workers did not finish in {timeout}s')


def test_vq_distributed_consistency(tmp_path):
    _run_workers(_dist_worker, 2, (2, free_port(), str(tmp_path)))
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt') for r in range(2))
    for name in ('ema', 'km', 'dead'):
        for key in r0[name]:
            assert torch.equal(r0[name][key], r1[name][key]), (name, key)
    assert r0['km']['initted'] and r0['km']['codebook'].abs().sum() > 0
    assert r0['restarted'] > 0

    # The EMA step equals the single-process step on the concatenated batch.
    batches = _dist_batches()
    torch.manual_seed(0)
    single = _vq(decay=0.9).train()
    single(torch.cat([b.reshape(-1, 8) for b in batches]))
    for key, value in single.state_dict().items():
        assert torch.allclose(r0['ema'][key].float(), value.float(),
                              atol=1e-6), key


# --------------------------------------------------------------------------
# BinarySphericalQuantizer
# --------------------------------------------------------------------------


@pytest.mark.parametrize('bits,group_size', [(10, 5), (18, 9), (36, 9)])
def test_bsq_index_code_round_trip(bits, group_size):
    bsq = BinarySphericalQuantizer(bits, group_size=group_size)
    assert bsq.vocab_size == 2**bits
    signs = torch.randint(0, 2, (500, bits),
                          generator=torch.Generator().manual_seed(0))
    codes = (signs.float() * 2 - 1) * (1. / math.sqrt(bits))
    indices = bsq.codes_to_indices(codes)
    assert indices.dtype == torch.long and indices.shape == (500, )
    assert indices.min() >= 0 and indices.max() < 2**bits
    assert torch.equal(bsq.indices_to_codes(indices), codes)
    assert len(set(indices.tolist())) == len(
        {tuple(row) for row in signs.tolist()})
    # Big-endian: dimension i is bit L - 1 - i of the index.
    one_hot = torch.eye(bits) * 2 - 1
    assert bsq.codes_to_indices(one_hot).tolist() == [
        2**(bits - 1 - i) for i in range(bits)
    ]
    assert bsq.codes_to_indices(-torch.ones(bits)) == 0
    assert bsq.codes_to_indices(torch.ones(bits)) == 2**bits - 1
    random_indices = torch.randint(
        0, 2**bits, (64, ), generator=torch.Generator().manual_seed(1))
    assert torch.equal(
        bsq.codes_to_indices(bsq.indices_to_codes(random_indices)),
        random_indices)

    out = bsq(_randn(2, 3, bits))
    assert out.indices.shape == (2, 3)
    assert torch.equal(bsq.codes_to_indices(out.quantized), out.indices)


def test_bsq_straight_through_and_values():
    bits = 18
    bsq = BinarySphericalQuantizer(bits)
    z = _randn(4, 5, bits).requires_grad_()
    out = bsq(z)
    assert torch.allclose(out.quantized.abs(),
                          torch.full_like(out.quantized, bits**-0.5))
    assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(4, 5))
    assert torch.equal(out.quantized > 0, z > 0)
    out.quantized.sum().backward()
    # Official: straight-through on the unscaled sign, then / sqrt(L).
    z_ref = z.detach().clone().requires_grad_()
    (F.normalize(z_ref, dim=-1) / math.sqrt(bits)).sum().backward()
    assert torch.allclose(z.grad, z_ref.grad, atol=1e-7)
    # sign(0) := -1 (official ``z > 0``) and the index agrees with it.
    zero = torch.zeros(1, bits)
    zero[0, 0] = 1.
    out = bsq(zero)
    assert torch.allclose(out.quantized[0, 1:], torch.full((bits - 1, ),
                                                           -bits**-0.5))
    assert out.indices.item() == 2**(bits - 1)


def test_bsq_stats():
    bsq = BinarySphericalQuantizer(4, group_size=4)
    z = torch.tensor([[1., 1, 1, 1], [1, -1, 1, -1], [1, 1, 1, 1],
                      [-1, -1, -1, -1]])
    out = bsq(z)
    assert out.indices.tolist() == [15, 0b1010, 15, 0]  # big-endian
    assert out.stats['used_codes'] == 3
    assert out.stats['bit_balance'] == pytest.approx(10 / 16)
    assert torch.allclose(out.stats['perplexity'],
                          out.losses['codebook_entropy'].exp())


def test_bsq_projection():
    torch.manual_seed(0)
    bsq = BinarySphericalQuantizer(18, in_dims=32)
    z = _randn(2, 7, 32)
    out = bsq(z)
    assert out.quantized.shape == (2, 7, 32)
    codes = bsq.indices_to_codes(out.indices)
    assert codes.shape == (2, 7, 18)
    u = F.normalize(bsq.in_proj(z), dim=-1)
    assert torch.equal(codes > 0, u > 0)
    decoded = bsq.decode_indices(out.indices)
    assert torch.allclose(decoded, out.quantized, atol=1e-5)
    assert torch.allclose(decoded, bsq.out_proj(codes), atol=1e-6)


def _brute_force(u, inv_temperature):
    """Full 2**L soft assignment: per-sample entropy, averaged q, codes."""
    bits = u.shape[1]
    signs = torch.tensor(
        list(itertools.product([-1., 1.], repeat=bits)), dtype=torch.float64)
    codes = signs / math.sqrt(bits)
    q = torch.softmax(inv_temperature * 2 * u.double() @ codes.t(), dim=-1)
    per_sample = -(torch.special.xlogy(q, q)).sum(-1).mean()
    return per_sample, q.mean(0), signs


def _entropy(p):
    return float(-(torch.special.xlogy(p, p)).sum())


def _group_marginal_entropies(avg, signs, group_size):
    total = 0.
    for start in range(0, signs.shape[1], group_size):
        marginal = {}
        for prob, row in zip(avg.tolist(), signs.tolist()):
            key = tuple(row[start:start + group_size])
            marginal[key] = marginal.get(key, 0.) + prob
        total += _entropy(torch.tensor(list(marginal.values())))
    return total


@pytest.mark.parametrize('bits,group_sizes', [(4, (1, 2, 4)),
                                              (6, (1, 2, 3, 6))])
@pytest.mark.parametrize('inv_temperature', [1.0, 4.0, 100.0])
def test_bsq_entropy_vs_brute_force(bits, group_sizes, inv_temperature):
    z = _randn(40, bits, seed=bits)
    u = F.normalize(z, dim=-1)
    per_sample, avg, signs = _brute_force(u, inv_temperature)
    joint = _entropy(avg)
    for group_size in group_sizes:
        bsq = BinarySphericalQuantizer(
            bits, group_size=group_size, inv_temperature=inv_temperature,
            per_sample_weight=0.7, codebook_weight=1.3, entropy_weight=0.2,
            entropy_eps=0.)  # exact entropies
        out = bsq(z.view(5, 8, bits))
        losses = out.losses
        assert losses['per_sample_entropy'].dtype == torch.float32
        assert float(losses['per_sample_entropy']) == pytest.approx(
            float(per_sample), rel=1e-4, abs=1e-5)
        codebook = float(losses['codebook_entropy'])
        assert codebook == pytest.approx(
            _group_marginal_entropies(avg, signs, group_size), rel=1e-4,
            abs=1e-5)
        if group_size == bits:
            assert codebook == pytest.approx(joint, rel=1e-4, abs=1e-5)
        assert codebook >= joint - 1e-5
        expected = 0.2 * (0.7 * losses['per_sample_entropy'] -
                          1.3 * losses['codebook_entropy']) / inv_temperature
        assert torch.allclose(out.loss, expected)
    if inv_temperature == 4.0:  # here the bound is clearly strict
        assert _group_marginal_entropies(avg, signs, 1) > joint + 1e-3


def test_bsq_entropy_gradient_flows():
    bsq = BinarySphericalQuantizer(18, in_dims=24, inv_temperature=2.)
    out = bsq(_randn(3, 4, 24))
    out.loss.backward()
    assert bsq.in_proj.weight.grad is not None
    assert bsq.in_proj.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------


def test_bad_arguments():
    with pytest.raises(ValueError,
                       match=r'code_dims \(10\).*group_size \(3\)'):
        BinarySphericalQuantizer(10, group_size=3)
    with pytest.raises(ValueError, match=r'code_dims must be in \[1, 62\]'):
        BinarySphericalQuantizer(63, group_size=9)
    with pytest.raises(ValueError, match=r'code_dims must be in \[1, 62\]'):
        BinarySphericalQuantizer(0, group_size=1)
    with pytest.raises(ValueError, match='group_size must be in'):
        BinarySphericalQuantizer(34, group_size=17)
    with pytest.raises(ValueError, match=r'last dimension 18.*\(2, 3, 16\)'):
        BinarySphericalQuantizer(18)(torch.zeros(2, 3, 16))
    with pytest.raises(ValueError, match=r'last dimension 32.*\(2, 18\)'):
        BinarySphericalQuantizer(18, in_dims=32)(torch.zeros(2, 18))
    with pytest.raises(ValueError, match=r'last dimension 8.*\(4, 7\)'):
        _vq()(torch.zeros(4, 7))
    with pytest.raises(ValueError, match=r'decay must be in \[0, 1\)'):
        _vq(decay=1.0)
    with pytest.raises(ValueError, match='dead_code_restart_steps'):
        _vq(dead_code_restart_steps=0)
    with pytest.raises(ValueError, match='num_codes must be >= 1'):
        _vq(num_codes=0)
