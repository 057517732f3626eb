"""Training step of mmvlp's BEiT3 versus the official model (torchscale
0.3.0), side by side with the same weights.

For each input kind (``image``: 224x224 images, 197 tokens; ``image_text``:
the images plus 64 text tokens, half of the texts padded) one training step
(forward, ``mean()`` loss, backward, ``zero_grad(set_to_none=True)``) of
each model runs in turn, A/B/A/B, ``--repeats`` times after ``--warmup``
unmeasured steps. The official model is built as unilm's ``beit3/`` does,
its weights are converted with mmvlp's converter and loaded into mmvlp's
``BEiT3``; the outputs are checked to agree before timing. Beside them runs
the step's GEMMs alone (:func:`gemm_floor`, ``--no-floor`` to skip): the
official time over that floor bounds the speed-up of any implementation of
the same arithmetic.

Peak memory of a step (what it allocates above the loaded model and its
inputs: activations, gradients, temporaries) is measured for the official
model, mmvlp, and mmvlp with ``with_cp=True``, after the timing: on CPU as
the rise of the peak resident set with glibc's allocator set to return
freed tensors to the system (see ``benchmarks/common.py``); on CUDA with
``torch.cuda.max_memory_allocated``.

CPU runs in fp32; on a GPU the step runs under bf16 autocast and the model
FLOP utilisation is reported when the GPU's peak is known (``--peak-tflops``).

Usage::

    python benchmarks/backbone.py                 # base, batch 4, CPU fp32
    python benchmarks/backbone.py --device cuda --batch-size 64 --arch large
"""
import argparse
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

import torch

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from benchmarks.common import (add_common_args, compare,  # noqa: E402
                               cpu_memory_tracking, finish,
                               machine_info, peak_memory, resolve_device,
                               run_interleaved, setup_threads)

MODES = ('image', 'image_text')
#: Smallest default batch of the memory measurement (see --help).
MEMORY_BATCH = 16
#: Dense bf16 peak (TFLOPS) of common GPUs, for model FLOP utilisation.
GPU_PEAK_TFLOPS = {'H100': 989.0, 'H200': 989.0, 'A100': 312.0,
                   'L40S': 362.0, 'A10': 125.0, 'L4': 121.0}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='base',
                        help="BEiT3 arch name ('tiny', 'base', 'large', "
                        "'giant') or a JSON dict with embed_dims, "
                        'num_layers, num_heads, feedforward_channels')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--text-len', type=int, default=64)
    parser.add_argument('--modes', default=','.join(MODES),
                        help=f'comma-separated subset of {MODES}')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory measurement')
    parser.add_argument('--memory-batch-size', type=int, default=None,
                        help='batch of the memory measurement (default: '
                        f'the larger of --batch-size and {MEMORY_BATCH}, '
                        'where activations, not the fixed gradients, '
                        'dominate as in training)')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='the GPU\'s dense bf16 peak, for model FLOP '
                        'utilisation (default: known for H100/H200/A100)')
    parser.add_argument('--no-floor', action='store_true',
                        help='skip timing the step\'s GEMMs alone (the '
                        'floor that bounds any implementation\'s speed-up)')
    parser.add_argument('--profile', action='store_true',
                        help='also profile one step of each model (torch '
                        'profiler) and store the top operators')
    add_common_args(parser, 'work_dirs/benchmarks/backbone.json')
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(',') if m]
    if args.memory_batch_size is None:
        args.memory_batch_size = max(args.batch_size, MEMORY_BATCH)
    unknown = set(args.modes) - set(MODES)
    if unknown or not args.modes:
        parser.error(f'--modes must be a subset of {MODES}, got '
                     f'{args.modes}.')
    if args.arch.startswith('{'):
        import json
        args.arch = json.loads(args.arch)
    return args


def build_models(args: argparse.Namespace, device: torch.device):
    """The official model and mmvlp's, with the same weights."""
    from mmvlp.testing import mmvlp_beit3_from_torchscale, torchscale_beit3
    official = torchscale_beit3(args.arch, img_size=args.img_size,
                                patch_size=args.patch_size, seed=args.seed)
    mmvlp = mmvlp_beit3_from_torchscale(official)
    return official.to(device).train(), mmvlp.to(device).train()


def make_inputs(args: argparse.Namespace, device: torch.device,
                batch: Optional[int] = None) -> dict:
    """Images, texts (ids 4..63999) and a padding mask: every second text
    is padded after a random length in [text_len / 2, text_len)."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    batch = batch or args.batch_size
    images = torch.randn(batch, 3, args.img_size, args.img_size,
                         generator=generator)
    text = torch.randint(4, 64000, (batch, args.text_len),
                         generator=generator)
    padding = torch.zeros(batch, args.text_len, dtype=torch.bool)
    low = max(1, args.text_len // 2)
    for index in range(1, batch, 2):
        length = int(torch.randint(low, args.text_len, (1, ),
                                   generator=generator)) \
            if args.text_len > low else args.text_len
        padding[index, length:] = True
    return dict(images=images.to(device), text=text.to(device),
                padding=padding.to(device))


def forward_fns(official: torch.nn.Module, mmvlp: torch.nn.Module,
                inputs: dict, mode: str
                ) -> Dict[str, Callable[[], torch.Tensor]]:
    """Each model's forward for ``mode``, returning ``(B, N, C)``."""
    images = inputs['images']
    text = inputs['text'] if mode == 'image_text' else None
    padding = inputs['padding'] if mode == 'image_text' else None

    def run_official() -> torch.Tensor:
        return official(textual_tokens=text, visual_tokens=images,
                        text_padding_position=padding)['encoder_out']

    def run_mmvlp() -> torch.Tensor:
        return mmvlp.forward_sequence(images=images, text_ids=text,
                                      text_padding_mask=padding)

    return dict(official=run_official, mmvlp=run_mmvlp)


def training_step(model: torch.nn.Module, forward: Callable[[], torch.Tensor],
                  device: torch.device) -> Callable[[], None]:
    """Forward, ``mean()`` loss, backward, drop the gradients.

    The returned function's ``grad_mib`` attribute holds the size of the
    gradients of the last step (part of every step's peak memory).
    """
    autocast = device.type == 'cuda'

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=autocast):
            out = forward()
        out.float().mean().backward()
        step.grad_mib = sum(p.grad.numel() * p.grad.element_size()
                            for p in model.parameters()
                            if p.grad is not None) / 2**20
        model.zero_grad(set_to_none=True)

    step.grad_mib = 0.
    return step


def step_flops(args: argparse.Namespace, settings: dict, mode: str) -> float:
    """Model FLOPs of one training step (3x the forward's matmul FLOPs:
    linear layers, attention scores and weighted sums, patch projection)."""
    dims, ffn = settings['embed_dims'], settings['feedforward_channels']
    grid = args.img_size // args.patch_size
    tokens = 1 + grid * grid + (args.text_len if mode == 'image_text' else 0)
    per_token = 4 * dims * dims + 2 * dims * ffn + 2 * tokens * dims
    macs = args.batch_size * (tokens * per_token * settings['num_layers'] +
                              grid * grid * 3 * args.patch_size**2 * dims)
    return 3 * 2 * macs


def gemm_floor(args: argparse.Namespace, settings: dict, mode: str,
               device: torch.device) -> Callable[[], None]:
    """The matrix multiplies of one training step and nothing else.

    Every GEMM of the step with its real shape and layout: per layer and
    modality the four linear layers (forward ``x @ W^T``, backward ``dy @ W``
    and ``dy^T @ x``; vision and text tokens through their own experts, as
    both implementations do), the six attention products of forward and
    backward over all tokens, and the patch projection (forward and weight
    gradient; images need no gradient). Each layer has its own tensors, so
    nothing stays in cache that a real step would have to fetch. No
    implementation that does this arithmetic in this precision can take
    less time, so ``official time / floor time`` bounds the speed-up any of
    them can reach (``*_bound`` in the results).
    """
    dims, ffn = settings['embed_dims'], settings['feedforward_channels']
    heads, layers = settings['num_heads'], settings['num_layers']
    grid = args.img_size // args.patch_size
    text = args.text_len if mode == 'image_text' else 0
    batch = args.batch_size
    tokens = 1 + grid * grid + text
    dtype = torch.bfloat16 if device.type == 'cuda' else torch.float32
    generator = torch.Generator().manual_seed(args.seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, dtype)

    linears = ((dims, 3 * dims), (dims, dims), (dims, ffn), (ffn, dims))
    groups = [batch * (1 + grid * grid)] + ([batch * text] if text else [])
    head = dims // heads
    per_layer = []
    for _ in range(layers):
        gemms = [(rand(rows, fan_in), rand(fan_out, fan_in),
                  rand(rows, fan_out))
                 for rows in groups for fan_in, fan_out in linears]
        attn = [rand(batch * heads, tokens, head) for _ in range(4)] + \
            [rand(batch * heads, tokens, tokens)]
        per_layer.append((gemms, attn))
    patch = 3 * args.patch_size**2
    patches = (rand(batch * grid * grid, patch), rand(dims, patch),
               rand(batch * grid * grid, dims))

    def step() -> None:
        for gemms, (q, k, v, grad_out, probs) in per_layer:
            for x, weight, grad_y in gemms:
                torch.mm(x, weight.t())
                torch.mm(grad_y, weight)
                torch.mm(grad_y.t(), x)
            torch.bmm(q, k.transpose(1, 2))  # scores
            torch.bmm(probs, v)  # weighted sum
            torch.bmm(grad_out, v.transpose(1, 2))  # d probs
            torch.bmm(probs.transpose(1, 2), grad_out)  # d v
            torch.bmm(probs, k)  # d q
            torch.bmm(probs.transpose(1, 2), q)  # d k
        x, weight, grad_y = patches
        torch.mm(x, weight.t())
        torch.mm(grad_y.t(), x)

    return step


def check_outputs(fns: Dict[str, Callable[[], torch.Tensor]],
                  models: Sequence[torch.nn.Module]) -> float:
    """Largest absolute difference of the two models' outputs (eval mode,
    no grad)."""
    for model in models:
        model.eval()
    try:
        with torch.no_grad():
            outs = [fn().float() for fn in fns.values()]
    finally:
        for model in models:
            model.train()
    return (outs[0] - outs[1]).abs().max().item()


def profile_step(step: Callable[[], None], top: int = 12) -> List[dict]:
    """Self time of the top operators of one step."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.
    return [dict(op=e.key, self_ms=round(e.self_cpu_time_total / 1e3, 1),
                 share=round(e.self_cpu_time_total / total, 4),
                 calls=e.count) for e in events[:top]]


def measure_memory(models: Sequence[torch.nn.Module], inputs: dict,
                   modes: Sequence[str], device: torch.device) -> dict:
    """Peak memory of one step of the official model, mmvlp and mmvlp with
    activation checkpointing (each after one warm-up step)."""
    official, mmvlp = models
    result = {}
    for mode in modes:
        fns = forward_fns(official, mmvlp, inputs, mode)
        variants = [('official', official, fns['official'], False),
                    ('mmvlp', mmvlp, fns['mmvlp'], False),
                    ('mmvlp_with_cp', mmvlp, fns['mmvlp'], True)]
        result[mode] = {}
        for name, model, forward, with_cp in variants:
            if model is mmvlp:
                mmvlp.set_grad_checkpointing(with_cp)
            step = training_step(model, forward, device)
            step()
            with peak_memory(device) as mem:
                step()
            mem['gradients_mib'] = round(step.grad_mib, 1)
            result[mode][name] = mem
        mmvlp.set_grad_checkpointing(False)
    return result


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    setup_threads(args.threads)

    from mmvlp.models.backbones.beit3 import ARCH_SETTINGS
    from mmvlp.models.layers import resolve_arch
    settings = resolve_arch(args.arch, ARCH_SETTINGS, 'BEiT3')
    precision = 'bf16-autocast' if device.type == 'cuda' else 'fp32'
    print(f'BEiT3 {args.arch} training step, official (torchscale 0.3.0) vs '
          f'mmvlp, batch {args.batch_size}, {precision} on {device}, '
          f'{torch.get_num_threads()} threads', flush=True)
    payload = dict(benchmark='backbone', machine=machine_info(device),
                   settings=dict(arch=args.arch, batch_size=args.batch_size,
                                 img_size=args.img_size,
                                 patch_size=args.patch_size,
                                 text_len=args.text_len, precision=precision,
                                 repeats=args.repeats, warmup=args.warmup,
                                 memory_batch_size=args.memory_batch_size,
                                 seed=args.seed),
                   modes={})
    official, mmvlp = build_models(args, device)
    inputs = make_inputs(args, device)
    peak_tflops = args.peak_tflops
    if peak_tflops is None and device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
        peak_tflops = next((v for k, v in GPU_PEAK_TFLOPS.items()
                            if k in name), None)
    headline = {}
    for mode in args.modes:
        print(f'{mode}:', flush=True)
        fns = forward_fns(official, mmvlp, inputs, mode)
        max_diff = check_outputs(fns, (official, mmvlp))
        steps = dict(official=training_step(official, fns['official'],
                                            device),
                     mmvlp=training_step(mmvlp, fns['mmvlp'], device))
        if not args.no_floor:
            steps['gemm_floor'] = gemm_floor(args, settings, mode, device)
        samples = run_interleaved(steps, args.repeats, args.warmup, device)
        stats = compare(samples['official'], samples['mmvlp'])
        flops = step_flops(args, settings, mode)
        entry = dict(samples=samples, comparison=stats,
                     output_max_abs_diff=max_diff, step_gflop=flops / 1e9)
        for name, key in (('official', 'baseline_median'),
                          ('mmvlp', 'candidate_median')):
            seconds = stats['wall_s'][key]
            entry[f'{name}_samples_per_s'] = args.batch_size / seconds
            entry[f'{name}_achieved_tflops'] = flops / seconds / 1e12
            if peak_tflops:
                entry[f'{name}_mfu'] = flops / seconds / 1e12 / peak_tflops
        floor_note = ''
        if 'gemm_floor' in samples:
            bound = compare(samples['official'], samples['gemm_floor'])
            entry['gemm_floor'] = bound
            entry['bound'] = bound['wall_s']['speedup']
            headline[f'{mode}_bound'] = entry['bound']
            floor_note = (f'; the GEMMs alone take '
                          f'{bound["wall_s"]["candidate_median"]:.3f}s, so '
                          f'no implementation of this arithmetic can beat '
                          f'the official step by more than '
                          f'{entry["bound"]:.3f}x')
        if args.profile:
            entry['profile'] = {name: profile_step(step)
                                for name, step in steps.items()
                                if name != 'gemm_floor'}
        payload['modes'][mode] = entry
        speedup = stats['wall_s']['speedup']
        print(f'  {mode}: official {stats["wall_s"]["baseline_median"]:.3f}s'
              f', mmvlp {stats["wall_s"]["candidate_median"]:.3f}s per step '
              f'(median); speed-up {speedup:.3f}x wall, '
              f'{stats["cpu_s"]["speedup"]:.3f}x cpu time; outputs differ '
              f'by {max_diff:.1e}{floor_note}', flush=True)
        headline[f'{mode}_speedup'] = speedup
        headline[f'{mode}_speedup_cpu'] = stats['cpu_s']['speedup']
        if peak_tflops:
            headline[f'{mode}_mfu'] = entry['mmvlp_mfu']
    if not args.no_memory:
        # After the timing: fixing the allocator's threshold slows it down.
        if args.memory_batch_size != args.batch_size:
            inputs = make_inputs(args, device, args.memory_batch_size)
        with cpu_memory_tracking() as tracking:
            if device.type == 'cuda' or tracking:
                memory = measure_memory((official, mmvlp), inputs,
                                        args.modes, device)
            else:
                memory = None
                print('Peak memory not measured: needs Linux with glibc '
                      '(mallopt, /proc/self/clear_refs).', flush=True)
        payload['memory'] = memory
        for mode, entry in (memory or {}).items():
            base = entry['official']['peak_mib']
            ratios = {name: entry[name]['peak_mib'] / base
                      for name in ('mmvlp', 'mmvlp_with_cp')}
            entry['ratio_to_official'] = ratios
            print(f'  {mode} peak memory of a step: official {base:.0f} MiB,'
                  f' mmvlp {entry["mmvlp"]["peak_mib"]:.0f} MiB '
                  f'({ratios["mmvlp"]:.2f}x), with_cp '
                  f'{entry["mmvlp_with_cp"]["peak_mib"]:.0f} MiB '
                  f'({ratios["mmvlp_with_cp"]:.2f}x); the gradients alone '
                  f'take {entry["official"]["gradients_mib"]:.0f} MiB',
                  flush=True)
            headline[f'{mode}_memory_ratio'] = ratios['mmvlp']
            headline[f'{mode}_memory_ratio_cp'] = ratios['mmvlp_with_cp']
    finish('backbone', payload, args.out, headline)
    return payload


if __name__ == '__main__':
    main()
