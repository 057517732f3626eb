"""The first run on a machine with one NVIDIA GPU, prepared as one command.

Runs, in this order, each section in its own process with a time limit (a
section that fails or runs out of time is recorded, and the next one runs;
the whole takes at most ``--budget-s``, 480 s by default):

1. ``backbone_base``, ``backbone_large``: ``benchmarks/backbone.py --device
   cuda --dtype bf16``: the bf16 training step of mmvlp against the official
   model (torchscale) under the same autocast (ratio), the official fp32
   step, the bf16 GEMM floor, model FLOP utilisation against the GPU's
   dense bf16 peak (detected from its name, e.g. H100/H200 989 TFLOPS;
   ``--peak-tflops`` otherwise) and peak memory with and without
   ``with_cp``.
2. ``pretrain_zero2``, ``pretrain_fsdp``: a few iterations of the base
   pretraining recipe on generated data under DeepSpeed ZeRO-2 and FSDP in
   one process (``tools/dist_train.sh CONFIG 1`` with
   ``configs/benchmarks/``): seconds per iteration, samples per second,
   peak memory, losses.
3. ``caption_decoding``: captions per second of ``BEiT3Captioner.generate``
   (base, bf16, beam 3 and greedy, cached keys/values).
4. ``dist_checks``: ``benchmarks/gpu_dist_check.py`` (the distributed and
   precision checks of a first GPU run), when that script exists.

The numbers go to ``--out`` (JSON) and a summary is printed. ``--cpu-smoke``
(alias ``--skip-gpu``) runs the same sections on CPU at tiny sizes, in this
process, in well under a minute (what CI runs,
``tests/test_gpu_check.py``); the pretraining sections then only build and
check their commands and configs, and ``gpu_dist_check.py`` gets
``--cpu-smoke``.

Usage::

    python benchmarks/gpu_check.py                  # on the GPU machine
    python benchmarks/gpu_check.py --cpu-smoke      # anywhere (CI)
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: Sections in running order, with their time limit (seconds) on a GPU.
SECTIONS = {'backbone_base': 120, 'backbone_large': 150,
            'pretrain_zero2': 150, 'pretrain_fsdp': 150,
            'caption_decoding': 90, 'dist_checks': 240}
SMOKE_LIMIT_S = 60
TINY_ARCH = json.dumps(dict(embed_dims=64, num_layers=2, num_heads=2,
                            feedforward_channels=128))
PRETRAIN_CONFIGS = {
    'pretrain_zero2': 'configs/benchmarks/'
    'beit3-base-p16_deepspeed-zero2-bf16_8xb32x3-300it_synthetic.py',
    'pretrain_fsdp': 'configs/benchmarks/'
    'beit3-base-p16_fsdp_8xb32x3-300it_synthetic.py',
}
DIST_CHECK = osp.join(ROOT, 'benchmarks', 'gpu_dist_check.py')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cpu-smoke', '--skip-gpu', dest='cpu_smoke',
                        action='store_true',
                        help='run the plumbing on CPU at tiny sizes (CI)')
    parser.add_argument('--out', default='work_dirs/benchmarks/gpu_check.json')
    parser.add_argument('--work-dir', default='work_dirs/gpu_check',
                        help='generated data and the pretraining runs')
    parser.add_argument('--budget-s', type=float, default=480.,
                        help='wall-clock budget of all sections')
    parser.add_argument('--sections', default=','.join(SECTIONS),
                        help=f'comma-separated subset of {list(SECTIONS)}')
    parser.add_argument('--pretrain-iters', type=int, default=12)
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='the GPU\'s dense bf16 peak when its name is '
                        'not known to benchmarks/backbone.py')
    parser.add_argument('--run-section', default=None,
                        help=argparse.SUPPRESS)  # internal: child process
    parser.add_argument('--section-out', default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sections = [s for s in args.sections.split(',') if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f'unknown sections {sorted(unknown)}; choose from '
                     f'{list(SECTIONS)}')
    return args


# ----------------------------------------------------------------------
# Sections (each runs in a child process and returns a dict)
# ----------------------------------------------------------------------
def section_backbone(args: argparse.Namespace, arch: str) -> dict:
    from benchmarks import backbone
    out = osp.join(args.work_dir, f'backbone_{arch}.json')
    if args.cpu_smoke:
        argv = ['--arch', TINY_ARCH, '--img-size', '32', '--text-len', '8',
                '--batch-size', '2', '--memory-batch-size', '2',
                '--device', 'cpu', '--dtype', 'bf16', '--repeats', '1',
                '--warmup', '0']
    else:
        batch = {'base': 64, 'large': 32}[arch]
        argv = ['--arch', arch, '--batch-size', str(batch), '--device',
                'cuda', '--dtype', 'bf16', '--repeats', '5', '--warmup', '2']
        if args.peak_tflops:
            argv += ['--peak-tflops', str(args.peak_tflops)]
    payload = backbone.main(argv + ['--out', out])
    result = dict(json=out, settings=payload['settings'],
                  process_settings=payload['process_settings'])
    for mode, entry in payload['modes'].items():
        seconds = {name: entry[f'{name}_samples_per_s']
                   for name in ('official', 'mmvlp', 'official_fp32')}
        result[mode] = dict(
            speedup=entry['comparison']['wall_s']['speedup'],
            speedup_vs_fp32=entry['vs_official_fp32']['wall_s']['speedup'],
            mmvlp_over_gemm_floor=entry['mmvlp_over_floor'],
            samples_per_s=seconds,
            mmvlp_mfu=entry.get('mmvlp_mfu'),
            official_mfu=entry.get('official_mfu'),
            attention_kernel=entry['attention_kernel'])
    for mode, entry in (payload.get('memory') or {}).items():
        result[mode]['peak_mib'] = {name: entry[name]['peak_mib'] for name in
                                    ('official', 'mmvlp', 'mmvlp_with_cp')}
    return result


def _pretrain_options(root: str, spm: str, iters: int,
                      smoke: bool) -> List[str]:
    """cfg-options that point the synthetic benchmark configs at ``root``
    and shorten them (as tests/test_pretrain_recipes.py does)."""
    from mmengine.config import Config
    config = osp.join(ROOT, PRETRAIN_CONFIGS['pretrain_zero2'])
    pipeline = Config.fromfile(config).train_dataloader.pair.dataset.pipeline
    tokenize, = [i for i, step in enumerate(pipeline)
                 if step.type == 'TokenizeText']
    workers = 0 if smoke else 4
    batch = 1 if smoke else 32
    return [
        f'train_dataloader.image.dataset.data_root={root}',
        f'train_dataloader.text.dataset.ann_file={root}/captions_train.jsonl',
        f'train_dataloader.text.dataset.tokenizer.model_file={spm}',
        f'train_dataloader.pair.dataset.data_root={root}',
        f'train_dataloader.pair.dataset.pipeline.{tokenize}.model_file={spm}',
        f'train_cfg.max_iters={iters}',
        'default_hooks.checkpoint=None',
        'default_hooks.logger.interval=1',
    ] + [f'train_dataloader.{source}.{key}'
         for source in ('image', 'text', 'pair')
         for key in (f'batch_size={batch}', f'num_workers={workers}',
                     f'persistent_workers={workers > 0}')]


def _generated_data(work_dir: str, smoke: bool) -> tuple:
    from mmvlp.datasets import make_demo_dataset
    from mmvlp.text import train_sentencepiece
    root = osp.join(work_dir, 'data_smoke' if smoke else 'data224')
    spm = osp.join(root, 'text_spm.model')
    if not osp.exists(spm):
        make_demo_dataset(root, num_train=8 if smoke else 96, num_val=2,
                          size=48 if smoke else 224)
        train_sentencepiece(osp.join(root, 'captions_train.jsonl'),
                            osp.join(root, 'text_spm'), vocab_size=100,
                            field='caption')
    return root, spm


def section_pretrain(args: argparse.Namespace, name: str) -> dict:
    from mmengine.config import Config, DictAction
    root, spm = _generated_data(args.work_dir, args.cpu_smoke)
    config = osp.join(ROOT, PRETRAIN_CONFIGS[name])
    options = _pretrain_options(root, spm, args.pretrain_iters,
                                args.cpu_smoke)
    work_dir = osp.join(args.work_dir, name)
    command = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config, '1',
               '--work-dir', work_dir, '--cfg-options'] + options
    result = dict(command=' '.join(command))
    # The options must apply to the config as it stands (as tools/train.py
    # parses them).
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({key: DictAction._parse_iterable(value) for key, value
                         in (option.split('=', 1) for option in options)})
    for source in ('image', 'text', 'pair'):
        dataset = cfg.train_dataloader[source].dataset
        for key in ('data_root', 'ann_file'):
            path = dataset.get(key)
            if path is not None and not osp.exists(
                    osp.join(dataset.get('data_root', ''), path)
                    if key == 'ann_file' else path):
                raise FileNotFoundError(f'{name}: {source} {key} {path} '
                                        'does not exist.')
    if cfg.train_cfg.max_iters != args.pretrain_iters:
        raise ValueError(f'{name}: the options did not set max_iters.')
    result['strategy'] = cfg.strategy.get('type', 'DeepSpeedStrategy')
    if args.cpu_smoke:
        result['status'] = 'not run (--cpu-smoke: needs a GPU)'
        return result
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
               TORCH_EXTENSIONS_DIR=osp.join(args.work_dir,
                                             'torch_extensions'))
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True,
                          cwd=ROOT)
    result.update(returncode=proc.returncode,
                  wall_s=time.perf_counter() - start,
                  output_tail=(proc.stdout + proc.stderr)[-3000:])
    if proc.returncode != 0:
        raise RuntimeError(f'{name} failed (exit {proc.returncode}):\n'
                           f'{result["output_tail"]}')
    summarize_benchmark = _load_tool('analysis_tools/summarize_benchmark.py')
    summary = summarize_benchmark.summarize(
        summarize_benchmark.load_run(work_dir), gpus=1, skip=2,
        curve=(1, args.pretrain_iters))
    del summary['name']
    result.update(summary)
    return result


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _load_tool(path: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], osp.join(ROOT, 'tools', path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section_captions(args: argparse.Namespace) -> dict:
    import torch

    from mmvlp.models.multimodal.captioning import BEiT3Captioner
    smoke = args.cpu_smoke
    device = torch.device('cpu' if smoke else 'cuda')
    arch = json.loads(TINY_ARCH) if smoke else 'base'
    size, batch, max_length = (32, 2, 6) if smoke else (224, 32, 32)
    torch.manual_seed(0)
    model = BEiT3Captioner(backbone=dict(type='BEiT3', arch=arch,
                                         img_size=size))
    model = model.to(device).eval()
    images = torch.randn(batch, 3, size, size, device=device)
    result = dict(batch=batch, max_length=max_length, device=str(device))
    for beams in (1, 3):
        runs = []
        for _ in range(1 if smoke else 3):
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                captions = model.generate(images, num_beams=beams,
                                          max_length=max_length)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - start)
        seconds = min(runs)
        tokens = sum(len(c) for c in captions)
        assert len(captions) == batch
        result[f'beam{beams}'] = dict(
            seconds=seconds, captions_per_s=batch / seconds,
            tokens_per_s=tokens / seconds,
            mean_tokens=tokens / batch)
    return result


def section_dist_checks(args: argparse.Namespace) -> dict:
    if not osp.exists(DIST_CHECK):
        return dict(status='not run: benchmarks/gpu_dist_check.py does not '
                    'exist in this checkout')
    command = [sys.executable, DIST_CHECK] + (
        ['--cpu-smoke'] if args.cpu_smoke else [])
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    output = proc.stdout + proc.stderr
    results = [dict(field.split('=', 1) for field in line.split()[1:]
                    if '=' in field)
               for line in proc.stdout.splitlines()
               if line.startswith('RESULT ')]
    result = dict(command=' '.join(command), returncode=proc.returncode,
                  results=results, output_tail=output[-3000:])
    if proc.returncode != 0:
        raise RuntimeError(f'gpu_dist_check.py failed (exit '
                           f'{proc.returncode}):\n{output[-3000:]}')
    return result


def run_section(args: argparse.Namespace, name: str) -> dict:
    if name.startswith('backbone_'):
        return section_backbone(args, name.split('_', 1)[1])
    if name.startswith('pretrain_'):
        return section_pretrain(args, name)
    if name == 'caption_decoding':
        return section_captions(args)
    return section_dist_checks(args)


# ----------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------
def gpu_facts() -> dict:
    """The GPU this runs on and its dense bf16 peak (None if unknown)."""
    import torch

    from benchmarks.backbone import GPU_PEAK_TFLOPS
    if not torch.cuda.is_available():
        return dict(gpu=None, cuda_available=False)
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in GPU_PEAK_TFLOPS.items() if k in name), None)
    return dict(gpu=name, cuda_available=True, cuda=torch.version.cuda,
                torch=torch.__version__, bf16_peak_tflops=peak,
                memory_gib=torch.cuda.get_device_properties(0).total_memory
                / 2**30)


def _child(args: argparse.Namespace, name: str, limit: float) -> dict:
    """Run one section in a child process within ``limit`` seconds."""
    out = osp.join(args.work_dir, f'section_{name}.json')
    if osp.exists(out):
        os.remove(out)
    command = [sys.executable, osp.abspath(__file__), '--run-section', name,
               '--section-out', out, '--work-dir', args.work_dir,
               '--pretrain-iters', str(args.pretrain_iters)]
    if args.cpu_smoke:
        command.append('--cpu-smoke')
    if args.peak_tflops:
        command += ['--peak-tflops', str(args.peak_tflops)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True,
                              timeout=limit, cwd=ROOT)
        tail = (proc.stdout + proc.stderr)[-2000:]
        code = proc.returncode
    except subprocess.TimeoutExpired as exc:
        tail = ((exc.stdout or b'').decode(errors='replace') +
                (exc.stderr or b'').decode(errors='replace'))[-2000:]
        code = None
    seconds = time.perf_counter() - start
    if code is None:
        return dict(status='timeout', seconds=seconds, limit_s=limit,
                    output_tail=tail)
    if code != 0 or not osp.exists(out):
        return dict(status='failed', seconds=seconds, returncode=code,
                    output_tail=tail)
    with open(out) as f:
        return dict(status='ok', seconds=seconds, result=json.load(f))


def _in_process(args: argparse.Namespace, name: str) -> dict:
    """Run one section in this process (``--cpu-smoke``: no GPU memory to
    isolate, and one import of torch instead of one per section)."""
    start = time.perf_counter()
    try:
        result = json.loads(json.dumps(run_section(args, name), default=str))
    except Exception as exc:  # recorded; the next section runs
        return dict(status='failed', seconds=time.perf_counter() - start,
                    output_tail=f'{type(exc).__name__}: {exc}'[-2000:])
    return dict(status='ok', seconds=time.perf_counter() - start,
                result=result)


def summary_lines(report: dict) -> List[str]:
    """The printed summary of a report."""
    lines = [f'GPU check ({report["mode"]}) on {report["gpu"].get("gpu") or "CPU"}'
             f': {report["seconds"]:.0f}s']
    for name, section in report['sections'].items():
        head = f'  {name}: {section["status"]} ({section.get("seconds", 0):.0f}s)'
        result = section.get('result') or {}
        details = []
        if name.startswith('backbone_'):
            for mode in ('image', 'image_text'):
                entry = result.get(mode)
                if not entry:
                    continue
                text = (f'{mode} {entry["speedup"]:.2f}x official bf16, '
                        f'{entry["speedup_vs_fp32"]:.2f}x official fp32, '
                        f'{entry["mmvlp_over_gemm_floor"]:.2f}x GEMM floor')
                if entry.get('mmvlp_mfu') is not None:
                    text += f', MFU {entry["mmvlp_mfu"]:.1%}'
                if 'peak_mib' in entry:
                    peak = entry['peak_mib']
                    text += (f', peak {peak["official"]:.0f}/'
                             f'{peak["mmvlp"]:.0f}/{peak["mmvlp_with_cp"]:.0f}'
                             ' MiB (official/mmvlp/with_cp)')
                details.append(text)
        elif name.startswith('pretrain_') and 'seconds_per_iter' in result:
            details.append(f'{result["seconds_per_iter"]:.3f} s/iter, '
                           f'{result["samples_per_second"]:.0f} samples/s, peak '
                           f'{result["peak_memory_gib"]} GiB, loss '
                           f'{result["loss"]}')
        elif name == 'caption_decoding' and 'beam3' in result:
            details.append(', '.join(
                f'beam {b}: {result[f"beam{b}"]["captions_per_s"]:.1f} '
                f'captions/s' for b in (1, 3)))
        elif result.get('status'):
            details.append(result['status'])
        if section['status'] != 'ok' and section.get('output_tail'):
            details.append(section['output_tail'].strip().splitlines()[-1]
                           [:200] if section['output_tail'].strip() else '')
        lines.append(head + ('' if not details else ': ' + '; '.join(
            d for d in details if d)))
    return lines


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    args.work_dir = osp.abspath(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    if args.run_section:
        result = run_section(args, args.run_section)
        with open(args.section_out, 'w') as f:
            json.dump(result, f, indent=2, default=str)
        return result
    gpu = gpu_facts()
    if not args.cpu_smoke and not gpu['cuda_available']:
        raise SystemExit('No CUDA GPU is visible; run on the GPU machine, '
                         'or use --cpu-smoke to check the script on CPU.')
    start = time.perf_counter()
    report = dict(mode='cpu-smoke' if args.cpu_smoke else 'gpu', gpu=gpu,
                  budget_s=args.budget_s, sections={})
    for name in args.sections:
        left = args.budget_s - (time.perf_counter() - start)
        limit = min(SMOKE_LIMIT_S if args.cpu_smoke else SECTIONS[name],
                    left)
        if limit < 20:
            report['sections'][name] = dict(
                status='skipped', reason=f'{left:.0f}s of the budget left')
            continue
        print(f'[gpu_check] {name} (limit {limit:.0f}s) ...', flush=True)
        report['sections'][name] = (_in_process(args, name) if args.cpu_smoke
                                    else _child(args, name, limit))
        print(f'[gpu_check] {name}: {report["sections"][name]["status"]} '
              f'in {report["sections"][name]["seconds"]:.0f}s', flush=True)
    report['seconds'] = time.perf_counter() - start
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2, default=str)
    print('\n'.join(summary_lines(report)), flush=True)
    print(f'RESULT benchmark=gpu_check mode={report["mode"]} ' + ' '.join(
        f'{name}={section["status"]}'
        for name, section in report['sections'].items()) +
        f' json={args.out}', flush=True)
    return report


if __name__ == '__main__':
    main()
