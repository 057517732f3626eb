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

``--dtype bf16`` (the default where bf16 pays: a GPU with bf16, a CPU with
AMX or AVX512-BF16 units) runs both forwards under
``torch.autocast(device, dtype=torch.bfloat16)`` and the GEMM floor in bf16,
and adds the official model's fp32 step to the rounds (``official_fp32``):
mmvlp's bf16 step is compared with the official step under the same
autocast and with the official fp32 step. ``--dtype fp32`` runs everything
in fp32. The process-wide settings that decide the speed (threads, the ISA
of ATen and oneDNN, whether oneDNN's bf16 GEMMs use AMX) are printed and
stored. On a GPU the model FLOP utilisation is reported when the GPU's
peak is known (``--peak-tflops``).

Usage::

    python benchmarks/backbone.py                 # base, batch 4, bf16 if
                                                  # the CPU has bf16 units
    python benchmarks/backbone.py --dtype fp32
    python benchmarks/backbone.py --device cuda --batch-size 64 --arch large
"""
import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

from benchmarks.common import (add_common_args, bf16_supported,  # noqa
                               compare, cpu_memory_tracking,
                               describe_settings, finish, machine_info,
                               median, peak_memory, process_settings,
                               resolve_device, run_interleaved,
                               setup_threads)

MODES = ('image', 'image_text')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
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
    parser.add_argument('--dtype', choices=('auto', *DTYPES), default='auto',
                        help='precision of the steps: bf16 (autocast) or '
                        'fp32; auto: bf16 where it pays (a GPU with bf16, a '
                        'CPU with AMX or AVX512-BF16), else fp32')
    parser.add_argument('--no-fp32-baseline', action='store_true',
                        help='with --dtype bf16, leave the official fp32 '
                        'step out of the rounds')
    parser.add_argument('--compile', action='store_true',
                        help='also time mmvlp with its layers compiled '
                        '(torch.compile, inductor; compiled before timing)')
    parser.add_argument('--profile', action='store_true',
                        help='also profile each model\'s step (torch '
                        'profiler, the fastest of 3 per operator) and store '
                        'and print the top operators')
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
                  device: torch.device,
                  dtype: torch.dtype = torch.float32) -> Callable[[], None]:
    """Forward (under bf16 autocast when ``dtype`` is bf16), ``mean()``
    loss, backward, drop the gradients.

    The returned function's ``grad_mib`` attribute holds the size of the
    gradients of the last step (part of every step's peak memory).
    """
    autocast = dtype != torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
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
               device: torch.device,
               dtype: torch.dtype = torch.float32) -> Callable[[], None]:
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
                  models: Sequence[torch.nn.Module],
                  dtype: torch.dtype = torch.float32) -> float:
    """How far apart the two models' outputs are (eval mode, no grad): the
    largest absolute difference in fp32, the relative (norm) difference
    under autocast to ``dtype``."""
    for model in models:
        model.eval()
    try:
        with torch.no_grad(), torch.autocast(
                next(models[0].parameters()).device.type, dtype=dtype,
                enabled=dtype != torch.float32):
            outs = [fn().float() for fn in fns.values()]
    finally:
        for model in models:
            model.train()
    if dtype == torch.float32:
        return (outs[0] - outs[1]).abs().max().item()
    return ((outs[0] - outs[1]).norm() / outs[0].norm()).item()


def profile_step(step: Callable[[], None], top: int = 15,
                 runs: int = 3) -> List[dict]:
    """Self time of the top operators of a step: the fastest of ``runs``
    profiled steps per operator (a shared machine slows single runs)."""
    from torch.profiler import ProfilerActivity, profile
    best: Dict[str, dict] = {}
    for _ in range(runs):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        for event in prof.key_averages():
            ms = event.self_cpu_time_total / 1e3
            if event.key not in best or ms < best[event.key]['self_ms']:
                best[event.key] = dict(op=event.key, self_ms=round(ms, 2),
                                       calls=event.count)
    rows = sorted(best.values(), key=lambda row: -row['self_ms'])
    total = sum(row['self_ms'] for row in rows) or 1.
    for row in rows:
        row['share'] = round(row['self_ms'] / total, 4)
    return rows[:top]


def measure_memory(models: Sequence[torch.nn.Module], inputs: dict,
                   modes: Sequence[str], device: torch.device,
                   dtype: torch.dtype = torch.float32) -> dict:
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
            step = training_step(model, forward, device, dtype)
            step()
            with peak_memory(device) as mem:
                step()
            mem['gradients_mib'] = round(step.grad_mib, 1)
            result[mode][name] = mem
        mmvlp.set_grad_checkpointing(False)
    return result


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``--dtype``: ``auto`` is bf16 where it pays on ``device``."""
    if name == 'auto':
        name = 'bf16' if bf16_supported(device) else 'fp32'
    return DTYPES[name]


def compiled_forward(mmvlp: torch.nn.Module, inputs: dict, mode: str
                     ) -> Callable[[], torch.Tensor]:
    """mmvlp's forward with every layer compiled (``torch.compile``; the
    layers share one compiled graph, their weights are its inputs)."""
    import copy
    model = copy.deepcopy(mmvlp)
    for layer in model.layers:
        layer.compile()
    fn = forward_fns(model, model, inputs, mode)['mmvlp']
    fn.model = model
    return fn


def _attention_kernel(args: argparse.Namespace, settings: dict, mode: str,
                      device: torch.device, dtype: torch.dtype) -> str:
    """The attention kernel mmvlp's step runs for this input."""
    from mmvlp.models.layers.attention_kernels import choose_kernel
    grid = args.img_size // args.patch_size
    tokens = 1 + grid * grid + (args.text_len if mode == 'image_text' else 0)
    q = torch.empty(1, 1, tokens, settings['embed_dims'] //
                    settings['num_heads'], device=device, dtype=dtype)
    return choose_kernel(q, q)


def _print_profile(name: str, rows: List[dict]) -> None:
    print(f'  profile of {name} (self time, fastest of 3 per operator):')
    for row in rows:
        print(f'    {row["self_ms"]:9.1f} ms {100 * row["share"]:5.1f}% '
              f'{row["calls"]:5d}x {row["op"]}')


def time_mode(args: argparse.Namespace, settings: dict, mode: str,
              models: Sequence[torch.nn.Module], inputs: dict,
              device: torch.device, dtype: torch.dtype,
              peak_tflops: Optional[float], headline: dict) -> dict:
    """The interleaved rounds of one input kind and their summary."""
    official, mmvlp = models
    bf16 = dtype != torch.float32
    fns = forward_fns(official, mmvlp, inputs, mode)
    max_diff = check_outputs(fns, (official, mmvlp))
    steps = dict(official=training_step(official, fns['official'], device,
                                        dtype),
                 mmvlp=training_step(mmvlp, fns['mmvlp'], device, dtype))
    if not args.no_floor:
        steps['gemm_floor'] = gemm_floor(args, settings, mode, device, dtype)
    if bf16 and not args.no_fp32_baseline:
        steps['official_fp32'] = training_step(official, fns['official'],
                                               device)
    entry = dict(output_max_abs_diff_fp32=max_diff,
                 output_rel_diff=check_outputs(fns, models, dtype),
                 attention_kernel=_attention_kernel(args, settings, mode,
                                                    device, dtype))
    if args.compile:
        forward = compiled_forward(mmvlp, inputs, mode)
        steps['mmvlp_compiled'] = training_step(forward.model, forward,
                                                device, dtype)
        start = time.perf_counter()
        steps['mmvlp_compiled']()
        entry['compile_s'] = time.perf_counter() - start
    samples = run_interleaved(steps, args.repeats, args.warmup, device)
    stats = compare(samples['official'], samples['mmvlp'])
    flops = step_flops(args, settings, mode)
    entry.update(samples=samples, comparison=stats, step_gflop=flops / 1e9)
    medians = {name: median([run['wall_s'] for run in runs])
               for name, runs in samples.items()}
    for name, seconds in medians.items():
        if name == 'gemm_floor':
            continue
        entry[f'{name}_samples_per_s'] = args.batch_size / seconds
        entry[f'{name}_achieved_tflops'] = flops / seconds / 1e12
        if peak_tflops:
            entry[f'{name}_mfu'] = flops / seconds / 1e12 / peak_tflops
    speedup = stats['wall_s']['speedup']
    headline[f'{mode}_speedup'] = speedup
    headline[f'{mode}_speedup_cpu'] = stats['cpu_s']['speedup']
    precision = 'bf16' if bf16 else 'fp32'
    lines = [f'  {mode}: official {medians["official"]:.3f}s, mmvlp '
             f'{medians["mmvlp"]:.3f}s per {precision} step (median); '
             f'speed-up {speedup:.3f}x wall, {stats["cpu_s"]["speedup"]:.3f}x '
             f'cpu time; attention kernel {entry["attention_kernel"]}; '
             f'outputs differ by {max_diff:.1e} (max, fp32), '
             f'{entry["output_rel_diff"]:.1e} (relative, {precision})']
    if 'gemm_floor' in samples:
        bound = compare(samples['official'], samples['gemm_floor'])
        over = compare(samples['mmvlp'], samples['gemm_floor'])
        entry.update(gemm_floor=bound, bound=bound['wall_s']['speedup'],
                     mmvlp_over_floor=over['wall_s']['speedup'])
        headline[f'{mode}_bound'] = entry['bound']
        headline[f'{mode}_over_floor'] = entry['mmvlp_over_floor']
        lines.append(f'    the step\'s GEMMs alone ({precision}) take '
                     f'{medians["gemm_floor"]:.3f}s: mmvlp\'s step is '
                     f'{entry["mmvlp_over_floor"]:.3f}x that floor, and no '
                     f'implementation of this arithmetic can beat the '
                     f'official step by more than {entry["bound"]:.3f}x')
    if 'official_fp32' in samples:
        vs_fp32 = compare(samples['official_fp32'], samples['mmvlp'])
        entry['vs_official_fp32'] = vs_fp32
        headline[f'{mode}_speedup_vs_fp32'] = vs_fp32['wall_s']['speedup']
        lines.append(f'    official fp32 step {medians["official_fp32"]:.3f}s'
                     f': mmvlp bf16 is {vs_fp32["wall_s"]["speedup"]:.3f}x '
                     f'faster')
    if 'mmvlp_compiled' in samples:
        comp = compare(samples['official'], samples['mmvlp_compiled'])
        eager = compare(samples['mmvlp'], samples['mmvlp_compiled'])
        entry.update(compiled=comp, compiled_vs_eager=eager)
        headline[f'{mode}_speedup_compiled'] = comp['wall_s']['speedup']
        lines.append(f'    mmvlp with compiled layers '
                     f'{medians["mmvlp_compiled"]:.3f}s: '
                     f'{comp["wall_s"]["speedup"]:.3f}x the official step, '
                     f'{eager["wall_s"]["speedup"]:.3f}x eager mmvlp '
                     f'(compiled in {entry["compile_s"]:.0f}s)')
    if peak_tflops:
        headline[f'{mode}_mfu'] = entry['mmvlp_mfu']
        lines.append(f'    model FLOP utilisation: official '
                     f'{entry["official_mfu"]:.1%}, mmvlp '
                     f'{entry["mmvlp_mfu"]:.1%} of {peak_tflops:.0f} TFLOPS')
    print('\n'.join(lines), flush=True)
    if args.profile:
        entry['profile'] = {}
        for name, step in steps.items():
            if name != 'gemm_floor':
                entry['profile'][name] = profile_step(step)
                _print_profile(name, entry['profile'][name])
    return entry


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    setup_threads(args.threads)
    dtype = resolve_dtype(args.dtype, device)

    from mmvlp.models.backbones.beit3 import ARCH_SETTINGS
    from mmvlp.models.layers import resolve_arch
    settings = resolve_arch(args.arch, ARCH_SETTINGS, 'BEiT3')
    precision = 'bf16-autocast' if dtype == torch.bfloat16 else 'fp32'
    process = process_settings(device)
    print(f'BEiT3 {args.arch} training step, official (torchscale 0.3.0) vs '
          f'mmvlp, batch {args.batch_size}, {precision} on {device}',
          flush=True)
    print(f'Settings: {describe_settings(process)}', flush=True)
    payload = dict(benchmark='backbone', machine=machine_info(device),
                   process_settings=process,
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
    payload['settings']['peak_tflops'] = peak_tflops
    headline = dict(precision=precision)
    for mode in args.modes:
        print(f'{mode}:', flush=True)
        payload['modes'][mode] = time_mode(args, settings, mode,
                                           (official, mmvlp), inputs, device,
                                           dtype, peak_tflops, headline)
    if not args.no_memory:
        # After the timing: fixing the allocator's threshold slows it down.
        if args.memory_batch_size != args.batch_size:
            inputs = make_inputs(args, device, args.memory_batch_size)
        with cpu_memory_tracking() as tracking:
            if device.type == 'cuda' or tracking:
                memory = measure_memory((official, mmvlp), inputs,
                                        args.modes, device, dtype)
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
            print(f'  {mode} peak memory of a {precision} step, batch '
                  f'{args.memory_batch_size}: official {base:.0f} MiB,'
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
