"""Attention kernels side by side: SDPA's backends against mmvlp's explicit
kernel and the official BEiT-3 code's way, forward + backward.

For each sequence length (``--tokens``) one attention of BEiT-3's shape
(``--heads`` heads of 64, batch ``--batch-size``; lengths above 197 get a
key-padding mask, as image+text batches have) runs forward and backward
with each kernel in turn, interleaved (A/B/C...), after a warm-up:

* ``sdpa_flash``, ``sdpa_math``, ``sdpa_efficient``: ``F.
  scaled_dot_product_attention`` restricted to one backend (a backend that
  cannot run these inputs on this device is reported as unavailable);
* ``explicit``: :func:`mmvlp.models.layers.attention_kernels.
  explicit_attention` (scores and softmax in fp32, the other GEMMs in the
  input precision, hand-written backward);
* ``bf16_scores``: what the official code does under autocast (``q @ k^T``
  rounded to the input precision, softmax in fp32, autograd backward).

Beside the times, the error of each kernel's output and input gradients
against float64 (relative, by norm). The kernel that
:func:`~mmvlp.models.layers.attention_kernels.choose_kernel` picks for the
inputs is reported too.

Usage::

    python benchmarks/attention.py                      # bf16 on CPU
    python benchmarks/attention.py --dtype fp32 --tokens 197,261
"""
import argparse
import os
import sys
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from benchmarks.common import (add_common_args, describe_settings,  # noqa
                               finish, machine_info, median,
                               process_settings, resolve_device,
                               run_interleaved, setup_threads)

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tokens', default='197,261,577,769',
                        help='comma-separated sequence lengths')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--heads', type=int, default=12)
    parser.add_argument('--head-dims', type=int, default=64)
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='bf16')
    parser.add_argument('--scale', type=float, default=1.,
                        help='factor on q, k, v (larger logits)')
    add_common_args(parser, 'work_dirs/benchmarks/attention.json')
    args = parser.parse_args(argv)
    args.tokens = [int(t) for t in args.tokens.split(',') if t]
    return args


def _bf16_scores(q, k, v, attn_mask=None):
    scores = torch.matmul(q * q.shape[-1]**-0.5, k.transpose(-1, -2))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float('-inf'))
    return torch.softmax(scores, -1, dtype=torch.float32).to(q.dtype) @ v


def kernels() -> Dict[str, Callable]:
    """Name to ``fn(q, k, v, attn_mask)``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mmvlp.models.layers.attention_kernels import explicit_attention

    def sdpa(backend):
        def run(q, k, v, attn_mask=None):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v,
                                                      attn_mask=attn_mask)
        return run

    return dict(sdpa_flash=sdpa(SDPBackend.FLASH_ATTENTION),
                sdpa_math=sdpa(SDPBackend.MATH),
                sdpa_efficient=sdpa(SDPBackend.EFFICIENT_ATTENTION),
                explicit=explicit_attention, bf16_scores=_bf16_scores)


def make_inputs(args: argparse.Namespace, tokens: int,
                device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(args.seed + tokens)
    shape = (args.batch_size, tokens, 3, args.heads, args.head_dims)
    qkv = torch.randn(shape, generator=generator, dtype=torch.float64)
    grad = torch.randn(args.batch_size, args.heads, tokens, args.head_dims,
                       generator=generator, dtype=torch.float64)
    mask = None
    if tokens > 197:
        padded = torch.zeros(args.batch_size, tokens, dtype=torch.bool)
        padded[1::2, tokens - (tokens - 197) // 2:] = True
        mask = (~padded)[:, None, None, :].to(device)
    return dict(qkv=(qkv * args.scale).to(device), grad=grad.to(device),
                mask=mask)


def _run(fn, qkv, grad, mask, dtype):
    leaf = qkv.detach().to(dtype).requires_grad_()
    q, k, v = leaf.permute(2, 0, 3, 1, 4).unbind(0)
    out = fn(q, k, v, attn_mask=mask)
    out.backward(grad.to(out.dtype))
    return out.detach(), leaf.grad


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    setup_threads(args.threads)
    dtype = DTYPES[args.dtype]
    from mmvlp.models.layers.attention_kernels import choose_kernel
    process = process_settings(device)
    print(f'Attention forward + backward, {args.heads} heads of '
          f'{args.head_dims}, batch {args.batch_size}, {args.dtype} on '
          f'{device}', flush=True)
    print(f'Settings: {describe_settings(process)}', flush=True)
    payload = dict(benchmark='attention', machine=machine_info(device),
                   process_settings=process, settings=vars(args).copy(),
                   tokens={})
    headline = {}
    for tokens in args.tokens:
        inputs = make_inputs(args, tokens, device)
        exact = _run(F.scaled_dot_product_attention, inputs['qkv'],
                     inputs['grad'], inputs['mask'], torch.float64)
        entry = dict(chosen=choose_kernel(
            inputs['qkv'][:, :, 0].to(dtype).transpose(1, 2),
            inputs['qkv'][:, :, 1].to(dtype).transpose(1, 2)),
            unavailable={}, error={})
        variants = {}
        for name, fn in kernels().items():
            try:
                out, grad = _run(fn, inputs['qkv'], inputs['grad'],
                                 inputs['mask'], dtype)
            except RuntimeError as exc:
                entry['unavailable'][name] = str(exc).splitlines()[0][:200]
                continue
            entry['error'][name] = {
                key: ((got.double() - ref).norm() / ref.norm()).item()
                for key, got, ref in (('output', out, exact[0]),
                                      ('grad', grad, exact[1]))}
            variants[name] = (lambda fn=fn: _run(
                fn, inputs['qkv'], inputs['grad'], inputs['mask'], dtype))
        masked = ' (padding mask)' if inputs['mask'] is not None else ''
        print(f'{tokens} tokens{masked}: mmvlp picks {entry["chosen"]}',
              flush=True)
        samples = run_interleaved(variants, args.repeats, args.warmup,
                                  device)
        entry['ms'] = {name: 1e3 * median([s['wall_s'] for s in runs])
                       for name, runs in samples.items()}
        entry['cpu_ms'] = {name: 1e3 * median([s['cpu_s'] for s in runs])
                           for name, runs in samples.items()}
        entry['samples'] = samples
        for name, ms in entry['ms'].items():
            err = entry['error'][name]
            print(f'  {name:15s} {ms:8.2f} ms (cpu {entry["cpu_ms"][name]:8.2f}'
                  f' ms)   error: output {err["output"]:.2e}, gradients '
                  f'{err["grad"]:.2e}', flush=True)
        for name, reason in entry['unavailable'].items():
            print(f'  {name:15s} unavailable: {reason}', flush=True)
        fastest = min(entry['ms'], key=entry['ms'].get)
        headline[f'n{tokens}_fastest'] = fastest
        headline[f'n{tokens}_chosen'] = entry['chosen']
        if 'explicit' in entry['ms'] and 'sdpa_flash' in entry['ms']:
            headline[f'n{tokens}_flash_over_explicit'] = (
                entry['ms']['sdpa_flash'] / entry['ms']['explicit'])
        payload['tokens'][tokens] = entry
    finish('attention', payload, args.out, headline)
    return payload


if __name__ == '__main__':
    main()
