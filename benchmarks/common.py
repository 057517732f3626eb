"""Shared pieces of the side-by-side benchmarks: interleaved timing, peak
memory, machine facts and the ``RESULT`` line / JSON output."""
import argparse
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch


def add_common_args(parser: argparse.ArgumentParser,
                    out: str) -> argparse.ArgumentParser:
    """Options every benchmark takes."""
    parser.add_argument('--device', default='auto',
                        choices=('auto', 'cpu', 'cuda'),
                        help='auto: cuda when available, else cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s, i.e. '
                        'OMP_NUM_THREADS or the core count)')
    parser.add_argument('--repeats', type=int, default=5,
                        help='measured repetitions of each variant, '
                        'interleaved A/B/A/B')
    parser.add_argument('--warmup', type=int, default=1,
                        help='unmeasured runs of each variant first')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=out,
                        help='where to write the JSON results')
    return parser


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda was requested but CUDA is not '
                         'available; use --device cpu.')
    return torch.device(name)


def setup_threads(threads: Optional[int]) -> int:
    """Set torch's CPU thread count (when given) and return it."""
    if threads is not None:
        if threads < 1:
            raise SystemExit(f'--threads must be >= 1, got {threads}.')
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object],
              device: torch.device) -> Dict[str, float]:
    """Wall-clock and process CPU seconds of one call.

    CPU time counts only this process's threads, so on a machine shared with
    other jobs it is less inflated than wall time by waiting for a core.
    """
    synchronize(device)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    synchronize(device)
    return dict(wall_s=time.perf_counter() - wall0,
                cpu_s=time.process_time() - cpu0)


def run_interleaved(variants: Dict[str, Callable[[], object]],
                    repeats: int,
                    warmup: int,
                    device: torch.device,
                    log: Callable[[str], None] = print
                    ) -> Dict[str, List[Dict[str, float]]]:
    """Run each variant ``warmup`` times, then ``repeats`` rounds of one
    call of each in turn (A/B/A/B ...), so that a change of load on the
    machine affects every variant alike.

    Returns:
        dict: Variant name to one ``{'wall_s', 'cpu_s'}`` per round.
    """
    if repeats < 1:
        raise SystemExit(f'--repeats must be >= 1, got {repeats}.')
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    samples: Dict[str, List[Dict[str, float]]] = {k: [] for k in variants}
    for round_index in range(repeats):
        parts = []
        for name, fn in variants.items():
            sample = time_call(fn, device)
            samples[name].append(sample)
            parts.append(f'{name} {sample["wall_s"]:.3f}s '
                         f'(cpu {sample["cpu_s"]:.3f}s)')
        log(f'  round {round_index + 1}/{repeats}: ' + ', '.join(parts))
    return samples


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def compare(baseline: List[Dict[str, float]],
            candidate: List[Dict[str, float]]) -> dict:
    """Medians of both and the speed-up of ``candidate`` per round.

    The speed-up of a round is baseline time / candidate time (> 1: the
    candidate is faster); its median over rounds is the headline ratio.
    Both wall-clock and CPU-time ratios are given.
    """
    out = {}
    for key in ('wall_s', 'cpu_s'):
        base = [s[key] for s in baseline]
        cand = [s[key] for s in candidate]
        ratios = [b / c for b, c in zip(base, cand)]
        out[key] = dict(baseline_median=median(base),
                        candidate_median=median(cand),
                        ratio_per_round=[round(r, 4) for r in ratios],
                        speedup=median(ratios))
    return out


# ----------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------
def _proc_status_mib(field: str) -> float:
    with open('/proc/self/status') as f:
        match = re.search(rf'^{field}:\s+(\d+) kB', f.read(), re.M)
    if match is None:
        raise RuntimeError(f'/proc/self/status has no {field}.')
    return int(match.group(1)) / 1024


_LIBC = None
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util
        _LIBC = ctypes.CDLL(ctypes.util.find_library('c') or None)
    return _LIBC


#: glibc's largest dynamic mmap threshold on 64-bit systems, restored
#: (fixed) after a measurement.
_MMAP_THRESHOLD_AFTER = 32 * 2**20


@contextmanager
def cpu_memory_tracking() -> Iterator[bool]:
    """Prepare this process for :func:`peak_memory` on CPU; yields False
    where it cannot work (not Linux with glibc).

    glibc keeps freed blocks below a dynamic threshold (up to 32 MiB) in its
    heap, so the resident set would not follow the live tensors. Inside the
    block the mmap threshold is fixed at 64 KiB (``mallopt``, as
    ``MALLOC_MMAP_THRESHOLD_=65536`` does at start-up): every tensor of
    64 KiB or more gets its own mapping, returned to the system when freed.
    That slows allocation, so measure memory after the timing. On exit the
    threshold is fixed at 32 MiB, glibc's usual steady state.
    """
    try:
        libc = _libc()
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, 65536))
        if ok:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            _proc_status_mib('VmHWM')
    except (OSError, AttributeError, RuntimeError):
        ok = False
    try:
        yield ok
    finally:
        if ok:
            libc.mallopt(M_MMAP_THRESHOLD, _MMAP_THRESHOLD_AFTER)


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Measure the memory a block adds at its peak, in MiB.

    On CUDA: ``max_memory_allocated`` minus the allocation before the block.
    On CPU (inside :func:`cpu_memory_tracking`): free heap pages are
    released (``malloc_trim``), the peak resident set (VmHWM) is reset, and
    the result is that peak minus the resident set before the block.

    Yields:
        dict: Filled on exit with ``peak_mib`` (the block's own peak),
        ``total_peak_mib`` (with what was resident before) and
        ``before_mib``.
    """
    result: dict = {}
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
        yield result
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        _libc().malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        before = _proc_status_mib('VmRSS')
        yield result
        peak = _proc_status_mib('VmHWM')
    result.update(peak_mib=round(peak - before, 1),
                  total_peak_mib=round(peak, 1),
                  before_mib=round(before, 1))


# ----------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = dict(
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        device=str(device),
    )
    if hasattr(os, 'getloadavg'):
        info['load_average_at_start'] = [round(x, 2) for x in os.getloadavg()]
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def _cpu_flags() -> set:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


#: A bf16 matrix multiply for oneDNN to report its ISA and kernel on.
_ONEDNN_PROBE = ('import torch; a = torch.ones(256, 256, dtype=torch.bfloat16)'
                 '; torch.mm(a, a)')


def onednn_info(timeout: float = 120.) -> dict:
    """What oneDNN runs bf16 matrix multiplies with on this CPU.

    One bf16 ``torch.mm`` in a child process with ``ONEDNN_VERBOSE=1``:
    ``isa`` is the instruction set oneDNN dispatches to (e.g. "Intel
    AVX-512 with Intel DL Boost and bfloat16 support", or "... AMX ...") and
    ``bf16_matmul_kernel`` the kernel that ran (``brg_matmul:avx512_core_amx``
    uses AMX tiles, ``...avx512_core_bf16`` the AVX512-BF16 dot products).
    ``ONEDNN_MAX_CPU_ISA`` in the environment caps the ISA for A/B runs.

    Returns:
        dict: ``isa``, ``bf16_matmul_kernel``, ``amx`` (bool) and the
        verbose lines, or ``error`` when the probe failed.
    """
    env = dict(os.environ, ONEDNN_VERBOSE='1')
    try:
        proc = subprocess.run([sys.executable, '-c', _ONEDNN_PROBE], env=env,
                              capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return dict(error=f'{type(exc).__name__}: {exc}')
    isa = re.search(r'^onednn_verbose,.*,cpu,isa:(.*)$', proc.stdout, re.M)
    kernel = re.search(r'^onednn_verbose,.*primitive,exec,cpu,matmul,'
                       r'([^,]+),', proc.stdout, re.M)
    info = dict(isa=isa.group(1).strip() if isa else None,
                bf16_matmul_kernel=kernel.group(1) if kernel else None,
                max_cpu_isa=os.environ.get('ONEDNN_MAX_CPU_ISA'))
    info['amx'] = bool(info['bf16_matmul_kernel'] and
                       'amx' in info['bf16_matmul_kernel'])
    if proc.returncode != 0 or info['isa'] is None:
        info['error'] = (proc.stderr or proc.stdout)[-500:]
    return info


def cpu_bf16_units() -> List[str]:
    """The CPU's bf16 arithmetic units (``/proc/cpuinfo`` flags
    ``amx_bf16``, ``avx512_bf16``); empty when it has none (bf16 is then
    emulated and slower than fp32) or the flags cannot be read."""
    flags = _cpu_flags()
    return [f for f in ('amx_bf16', 'avx512_bf16') if f in flags]


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 mixed precision pays on ``device``: a GPU that supports
    bf16, or a CPU with AMX or AVX512-BF16 units."""
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported()
    return bool(cpu_bf16_units())


def process_settings(device: torch.device) -> dict:
    """The process-wide settings that decide a step's speed: threads, the
    ISA ATen's and oneDNN's kernels use, the BLAS, the matmul precision."""
    info = dict(
        torch_threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
        aten_cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_bf16_units=cpu_bf16_units(),
        mkl=torch.backends.mkl.is_available(),
        mkldnn=torch.backends.mkldnn.is_available(),
        float32_matmul_precision=torch.get_float32_matmul_precision(),
    )
    if device.type == 'cpu' and torch.backends.mkldnn.is_available():
        info['onednn'] = onednn_info()
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
        info['cudnn'] = torch.backends.cudnn.version()
    return info


def describe_settings(info: dict) -> str:
    """One line of :func:`process_settings` for the log."""
    parts = [f'{info["torch_threads"]} torch threads '
             f'(OMP_NUM_THREADS={info["omp_num_threads"]})',
             f'ATen CPU capability {info["aten_cpu_capability"]}',
             f'bf16 units: {", ".join(info["cpu_bf16_units"]) or "none"}']
    onednn = info.get('onednn')
    if onednn:
        if onednn.get('isa'):
            parts.append(f'oneDNN ISA: {onednn["isa"]}; bf16 matmul kernel '
                         f'{onednn["bf16_matmul_kernel"]} (AMX '
                         f'{"used" if onednn["amx"] else "not used"})')
        else:
            parts.append(f'oneDNN probe failed: {onednn.get("error")}')
    if 'gpu' in info:
        parts.append(f'{info["gpu"]}, CUDA {info["cuda"]}')
    return '; '.join(parts)


def finish(name: str, payload: dict, out: str,
           headline: Dict[str, object]) -> None:
    """Write the JSON and print the final ``RESULT`` line."""
    if hasattr(os, 'getloadavg'):
        payload.setdefault('machine', {})['load_average_at_end'] = [
            round(x, 2) for x in os.getloadavg()]
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    with open(out, 'w') as f:
        json.dump(payload, f, indent=2)
    fields = ' '.join(f'{key}={_fmt(value)}'
                      for key, value in headline.items())
    print(f'RESULT benchmark={name} {fields} json={out}', flush=True)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value).replace(' ', '_')
