"""The checks a first GPU run must make for distributed training and
precision (docs/scaling.md, "First GPU run"), each printing a RESULT line
and writing ``WORK_DIR/gpu_dist_check.json``; exits 1 when one fails.

* ``matrix``: every task's demo config trained and evaluated with N GPUs
  (``tools/analysis_tools/dist_matrix.py``, NCCL) under
  ``TORCH_DISTRIBUTED_DEBUG=DETAIL``, metrics compared with 1 GPU;
* ``syncs``: one pretraining step under
  ``torch.cuda.set_sync_debug_mode('warn')``: every synchronising CUDA call
  with where it comes from, next to the census of
  :class:`mmvlp.testing.HostSyncCensus` (what CPU runs can see);
* ``tokens``: visual-tokenizer targets of the base VQ-KD in fp32, under bf16
  autocast with fp32 weights (DDP / FSDP with AmpOptimWrapper), and as
  mmvlp runs them under DeepSpeed bf16 (kept out of the engine, autocast):
  the last two must agree exactly; the agreement with fp32 is reported;
* ``parity``: DDP, ZeRO-1/2/3 (every parameter partitioned) and FSDP, in
  fp32 and bf16 (ZeRO: DeepSpeed bf16; FSDP: its bf16 mixed-precision
  policy), at base size (``tests/helpers/strategy_runs.py``, N processes):
  losses per step against DDP fp32, resume from step 2, consolidated fp32
  weights against DDP;
* ``mmdet``: mmcv's ops compiled with CUDA, and one Mask R-CNN iteration
  (RoIAlign, NMS) on the GPU.

Usage::

    python benchmarks/gpu_dist_check.py [--work-dir work_dirs/gpu_dist_check]
        [--gpus 2] [--checks matrix syncs tokens parity mmdet]
    python benchmarks/gpu_dist_check.py --cpu-smoke   # CI, no GPU

``--cpu-smoke`` runs the parts that need no GPU on the CPU, tiny: the sync
census, the token agreement, the parity of DDP / ZeRO-3 / FSDP (fp32, 2
processes, gloo) with resume and consolidation, one mmdet iteration; the
matrix is ``make test-dist``'s. Nothing it prints is a GPU measurement.
"""
import argparse
import contextlib
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import time
import traceback
import warnings
from typing import Callable, Dict, List

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TESTS = osp.join(REPO, 'tests')
sys.path[:0] = [REPO, TESTS, osp.join(TESTS, 'helpers')]

CHECKS = ('matrix', 'syncs', 'tokens', 'parity', 'mmdet')


def _device(smoke: bool) -> str:
    import torch
    if smoke:
        return 'cpu'
    if not torch.cuda.is_available():
        raise SystemExit('No GPU: run with --cpu-smoke, or on a GPU host.')
    return 'cuda'


def _env(**extra) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]),
               **extra)
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT'):
        env.pop(key, None)
    return env


def _free_port() -> int:
    from helpers.ports import free_port
    return free_port()


# ------------------------------------------------------------------ checks
def check_matrix(args, work: str) -> dict:
    """dist_matrix.py with N GPUs and DETAIL debugging of DDP (it checks
    that every rank runs the same collectives with the same shapes)."""
    log = osp.join(work, 'matrix.log')
    with open(log, 'w') as f:
        result = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'analysis_tools',
                                      'dist_matrix.py'),
             '--work-dir', osp.join(work, 'matrix'),
             '--nproc', str(args.gpus)],
            cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
            env=_env(TORCH_DISTRIBUTED_DEBUG=args.debug_level))
    with open(osp.join(work, 'matrix', 'matrix.json')) as f:
        summary = json.load(f)
    return dict(ok=result.returncode == 0, log=log,
                failures=summary['failures'], seconds=summary['seconds'])


def _pretrain_runner(work: str, device: str, arch):
    """A pretraining runner of the demo config on tiny generated data
    (random tokenizer), ``arch`` backbone, batch 2 per source."""
    from helpers.demo_data import make_demo_with_spm
    from test_pretrain_runner import _cfg

    from mmvlp.runtime import build_runner, setup_launch
    root = osp.join(work, 'data')
    if not osp.exists(osp.join(root, 'text_spm.model')):
        make_demo_with_spm(root, num_train=8, num_val=2)
    cfg = _cfg(root, osp.join(work, 'syncs'), max_iters=3)
    for loader in cfg.train_dataloader.values():
        loader.batch_size = 2
    if arch is not None:
        cfg.model.backbone.arch = arch
    if device == 'cuda':  # the recipes' mixed precision
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    cfg.launcher = 'none'
    setup_launch(cfg)
    return build_runner(cfg)


def check_syncs(args, work: str) -> dict:
    """Host syncs of one pretraining step (the second)."""
    import torch
    from mmengine.hooks import Hook

    from mmvlp.testing.host_syncs import HostSyncCensus, relative_source_path
    device = _device(args.cpu_smoke)
    runner = _pretrain_runner(work, device,
                              None if args.cpu_smoke else 'base')
    census = HostSyncCensus(packages=('/mmvlp/', '/torch/optim/',
                                      '/mmengine/'))
    cuda_syncs: List[str] = []
    original = warnings.showwarning

    def record(message, category, filename, lineno, *rest, **kwargs):
        if 'synchroniz' in str(message):
            ours = ('mmvlp/', 'mmengine/')
            frames = [f for f in traceback.extract_stack()[:-1]
                      if relative_source_path(f.filename).startswith(ours)]
            where = (f'{relative_source_path(frames[-1].filename)}:'
                     f'{frames[-1].lineno}') if frames else filename
            cuda_syncs.append(f'{where}: {str(message)[:80]}')
        else:
            original(message, category, filename, lineno, *rest, **kwargs)

    class Step(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if batch_idx == 1:
                census.__enter__()
                if device == 'cuda':
                    torch.cuda.synchronize()
                    warnings.showwarning = record
                    torch.cuda.set_sync_debug_mode('warn')

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if batch_idx == 1:
                if device == 'cuda':
                    torch.cuda.set_sync_debug_mode('default')
                    warnings.showwarning = original
                census.__exit__(None, None, None)

    runner.register_hook(Step(), 'VERY_HIGH')
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        runner.train()
    counted = {f'{op} {where}': n for (op, where), n in census.syncs.items()}
    return dict(ok=True, device=device, census=counted,
                cuda_sync_warnings=len(cuda_syncs),
                cuda_syncs=sorted(set(cuda_syncs)))


def check_tokens(args, work: str) -> dict:
    """Visual targets in fp32, bf16 autocast and mmvlp's DeepSpeed bf16."""
    import torch
    from mmengine.config import Config

    from mmvlp.models.algorithms import BEiT3Pretrain
    from mmvlp.compat.strategies import detach_frozen_modules
    device = _device(args.cpu_smoke)
    torch.manual_seed(0)
    if args.cpu_smoke:
        tokenizer = dict(
            type='VQKD',
            encoder=dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                                   feedforward_channels=128),
                         img_size=32, patch_size=8),
            quantizer=dict(type='NormEMAVectorQuantizer', num_codes=512,
                           code_dims=16, kmeans_init=False),
            decoder=dict(arch=dict(embed_dims=64, num_layers=1, num_heads=2,
                                   feedforward_channels=128)),
            target=dict(type='ColorHistogramTarget', patch_size=8, bins=4))
        size, batch = 32, 16
    else:  # the base VQ-KD of the recipes, random weights and codebook
        cfg = Config.fromfile(osp.join(
            REPO, 'configs', 'beit3', 'beit3-base-p16_64xb32x3-1m_pretrain.py'))
        tokenizer = cfg.model.tokenizer.to_dict()
        tokenizer['quantizer']['kmeans_init'] = False
        size, batch = 224, 64
    backbone = dict(type='BEiT3', arch=dict(embed_dims=32, num_layers=1,
                                            num_heads=2,
                                            feedforward_channels=64),
                    img_size=size, patch_size=16 if size == 224 else 8,
                    vocab_size=16, max_text_len=8, text_mask_token_id=15)
    model = BEiT3Pretrain(backbone=backbone, tokenizer=tokenizer)
    model = model.to(device).eval()
    pixels = torch.randint(0, 256, (batch, 3, size, size),
                           device=device).float()
    fp32 = model._visual_targets(dict(tokenizer_images=pixels))
    with torch.autocast(device, dtype=torch.bfloat16):
        autocast = model._visual_targets(dict(tokenizer_images=pixels))
    deepspeed = copy.deepcopy(model)
    detach_frozen_modules(deepspeed)
    deepspeed.target_autocast = torch.bfloat16
    deepspeed.bfloat16()  # what DeepSpeed's bf16 engine does to its module
    kept = deepspeed._visual_targets(dict(tokenizer_images=pixels.bfloat16()))
    cast = copy.deepcopy(model).bfloat16()._visual_targets(
        dict(tokenizer_images=pixels.bfloat16()))
    agree = lambda a, b: float((a == b).float().mean())  # noqa: E731
    result = dict(device=device, tokens=fp32.numel(),
                  bf16_autocast_vs_fp32=agree(autocast, fp32),
                  deepspeed_bf16_vs_bf16_autocast=agree(kept, autocast),
                  tokenizer_cast_to_bf16_vs_bf16_autocast=agree(cast,
                                                                autocast))
    result['ok'] = result['deepspeed_bf16_vs_bf16_autocast'] == 1.0
    return result


def _parity_spec(args, data_root: str, out: str) -> dict:
    if args.cpu_smoke:
        strategies, arch, steps = ['ddp', 'zero3', 'fsdp'], None, 3
    else:
        strategies, arch, steps = ['ddp', 'zero1', 'zero2', 'zero3',
                                   'fsdp'], 'base', 4
    runs = []
    for strategy in strategies:
        for precision in (['fp32'] if args.cpu_smoke or strategy == 'ddp'
                          else ['fp32', 'bf16']):
            name = f'{strategy}_{precision}'
            base = dict(strategy=strategy, precision=precision, batch=1,
                        max_iters=steps, checkpoint_interval=2,
                        lr=0.05 if arch is None else 1e-4)
            if arch is not None:
                base['arch'] = arch
            runs.append(dict(base, name=name))
            runs.append(dict(base, name=name + '_resume',
                             resume_from=osp.join(out, name, 'iter_2.pth')))
    return dict(data_root=data_root, out=out, runs=runs)


def check_parity(args, work: str) -> dict:
    """DDP / ZeRO / FSDP losses, resume and consolidated weights."""
    from helpers.demo_data import make_demo_with_spm

    from mmvlp.checkpoint.consolidation import (checkpoint_kind,
                                                consolidate_deepspeed,
                                                consolidate_file)
    root = osp.join(work, 'parity')
    data_root = osp.join(work, 'data')
    if not osp.exists(osp.join(data_root, 'text_spm.model')):
        make_demo_with_spm(data_root, num_train=8, num_val=2)
    spec = _parity_spec(args, data_root, osp.join(root, 'runs'))
    os.makedirs(root, exist_ok=True)
    spec_file = osp.join(root, 'spec.json')
    with open(spec_file, 'w') as f:
        json.dump(spec, f)
    nproc = 2 if args.cpu_smoke else args.gpus
    extra = dict(OMP_NUM_THREADS='1')
    if args.cpu_smoke:
        extra['CUDA_VISIBLE_DEVICES'] = ''
    log = osp.join(root, 'launch.log')
    with open(log, 'w') as f:
        result = subprocess.run(
            [sys.executable, '-m', 'torch.distributed.run',
             f'--nproc_per_node={nproc}', f'--master_port={_free_port()}',
             osp.join(TESTS, 'helpers', 'strategy_runs.py'), spec_file],
            cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=_env(**extra))
    if result.returncode != 0:
        return dict(ok=False, log=log, error='the launch failed')
    records, weights = {}, {}
    for run in spec['runs']:
        with open(osp.join(spec['out'], run['name'], 'record.json')) as f:
            records[run['name']] = json.load(f)
        with open(osp.join(spec['out'], run['name'],
                           'last_checkpoint')) as f:
            path = f.read().strip()
        state = (consolidate_deepspeed(path) if checkpoint_kind(path) ==
                 'deepspeed' else consolidate_file(path))[0]
        weights[run['name']] = {k: v for k, v in state.items()
                                if not k.startswith('tokenizer.')}
    losses = {name: [s['loss'] for s in r['steps']]
              for name, r in records.items()}
    problems, report = [], {}
    ddp = losses['ddp_fp32']
    for name, curve in losses.items():
        if name.endswith('_resume'):
            whole = losses[name[:-len('_resume')]][2:]
            tol = 1e-5 if args.cpu_smoke else 1e-4
        else:
            whole = ddp
            tol = 2e-2 if 'bf16' in name else (1e-5 if args.cpu_smoke
                                               else 1e-4)
        worst = max(abs(a - b) / max(abs(b), 1e-12)
                    for a, b in zip(curve, whole))
        report[name] = dict(losses=curve, worst_relative=worst,
                            tolerance=tol)
        if len(curve) != len(whole) or worst > tol:
            problems.append(f'{name}: loss off by {worst:.2e} > {tol}')
        if 'fp32' in name:
            reference = weights['ddp_fp32']
            if set(weights[name]) != set(reference):
                problems.append(f'{name}: other parameters than DDP')
                continue
            diff = max(float((weights[name][k] - v).abs().max())
                       for k, v in reference.items())
            report[name]['weights_max_abs_diff_vs_ddp'] = diff
            if diff > (1e-4 if args.cpu_smoke else 1e-3):
                problems.append(f'{name}: weights off by {diff:.2e}')
    zero3 = records['zero3_fp32'].get('zero3_partition', {})
    if zero3.get('persistent', 1) != 0:
        problems.append(f'zero3 kept parameters whole: {zero3}')
    for name, record in records.items():
        tokenizer = record.get('tokenizer', {})
        if tokenizer.get('dtypes') != ['torch.float32'] or \
                tokenizer.get('sharded'):
            problems.append(f'{name}: tokenizer {tokenizer}')
    return dict(ok=not problems, problems=problems, runs=report,
                zero3_partition=zero3, log=log)


def check_mmdet(args, work: str) -> dict:
    """mmcv's ops and one Mask R-CNN iteration on the device."""
    sys.path.insert(0, osp.join(REPO, 'tools'))
    from check_env import host_mmcv_key, mmcv_flavour, mmcv_ops_cuda
    device = _device(args.cpu_smoke)
    data = osp.join(work, 'data_coco')
    from mmvlp.datasets import make_demo_coco
    if not osp.isdir(osp.join(data, 'annotations')):
        make_demo_coco(data, 8, 2, seed=1)
    config = osp.join(REPO, 'configs', 'mmdet', 'mask-rcnn_beit3-tiny-p8_'
                      'simple-fpn_1xb8-300it_demo-shapes.py')
    options = [f'{loader}.dataset.data_root={data}/' for loader in
               ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += ['model.backbone.init_cfg=None', 'train_cfg.max_iters=1',
                'train_dataloader.batch_size=2', 'val_cfg=None',
                'val_dataloader=None', 'val_evaluator=None',
                'train_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False',
                'default_hooks.checkpoint.interval=1']
    log = osp.join(work, 'mmdet.log')
    env = _env(CUDA_VISIBLE_DEVICES='') if args.cpu_smoke else _env()
    with open(log, 'w') as f:
        result = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
             '--work-dir', osp.join(work, 'mmdet'), '--cfg-options'] +
            options, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    ops = mmcv_flavour()
    trained = osp.isfile(osp.join(work, 'mmdet', 'iter_1.pth'))
    ok = result.returncode == 0 and trained and (
        args.cpu_smoke or mmcv_ops_cuda() is not None)
    return dict(ok=ok, device=device, mmcv_ops=ops,
                host_key=host_mmcv_key(), log=log)


RUNNERS: Dict[str, Callable] = dict(matrix=check_matrix, syncs=check_syncs,
                                    tokens=check_tokens, parity=check_parity,
                                    mmdet=check_mmdet)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/gpu_dist_check')
    parser.add_argument('--gpus', type=int, default=2)
    parser.add_argument('--checks', nargs='+', choices=CHECKS,
                        default=None)
    parser.add_argument('--debug-level', default='DETAIL',
                        choices=['OFF', 'INFO', 'DETAIL'],
                        help='TORCH_DISTRIBUTED_DEBUG of the matrix (DETAIL '
                        'crashes gloo runs on CPU with torch 2.14.1; INFO '
                        'names unused parameters too)')
    parser.add_argument('--cpu-smoke', action='store_true',
                        help='the parts that need no GPU, tiny, on the CPU')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    checks = args.checks or [c for c in CHECKS
                             if not (args.cpu_smoke and c == 'matrix')]
    work = osp.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    results = {}
    for name in checks:
        start = time.time()
        try:
            result = RUNNERS[name](args, work)
        except Exception as error:  # noqa: BLE001 -- report and go on
            result = dict(ok=False, error=f'{type(error).__name__}: {error}',
                          trace=traceback.format_exc()[-3000:])
        result['seconds'] = round(time.time() - start, 1)
        results[name] = result
        status = 'ok' if result['ok'] else 'FAILED'
        brief = {k: v for k, v in result.items()
                 if k not in ('census', 'cuda_syncs', 'runs', 'trace')}
        print(f'RESULT gpu_dist_check {name}: {status} {json.dumps(brief)}',
              flush=True)
        if not result['ok'] and 'trace' in result:
            print(result['trace'], flush=True)
    with open(osp.join(work, 'gpu_dist_check.json'), 'w') as f:
        json.dump(dict(cpu_smoke=args.cpu_smoke, results=results), f,
                  indent=1)
    return 0 if all(r['ok'] for r in results.values()) else 1


if __name__ == '__main__':
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
