"""Every task's demo config under several processes: train a few
iterations with ``tools/dist_train.sh CONFIG N`` and evaluate the
checkpoint with ``tools/dist_test.sh CONFIG CKPT N``; where the mathematics
says the metric cannot depend on the number of processes (every metric
here, evaluated with one sample per batch), compare it with one process
(``tools/test.py``).

Usage:
    python tools/analysis_tools/dist_matrix.py [--work-dir DIR] [--nproc 2]
        [--tasks vqkd bsqvit qlip qlip_stage2 pretrain cls det seg
         retrieval vqa nlvr2 caption] [--iters 3] [--no-compare] [--keep]

``make test-dist`` runs it on CPU (gloo); on a GPU host the same command
runs NCCL with one process per GPU (``benchmarks/gpu_dist_check.py`` adds
``TORCH_DISTRIBUTED_DEBUG=DETAIL``). Everything it needs is generated in
``--work-dir`` (tiny data laid out as the configs expect under
``data/``, which is why the runs start there): the VQ-KD tokenizer is
trained first, the pretraining uses it as its target, and the fine-tuning
tasks start from the pretraining's checkpoint; QLIP stage 2 starts from the
BSQ-ViT run (with a random VGG-16 for its perceptual loss). The pretraining config has
no test loop (its evaluation is ``eval_demo_pretrain.py``): it is trained
only. Exits 1 when a run fails or a metric differs; writes
``matrix.json`` with the metrics and seconds of each run.
"""
import argparse
import json
import os
import os.path as osp
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: Held-out samples: odd, so that two processes hold different numbers of
#: samples (and of captions) and the padded sampler repeats one.
NUM_VAL = 7


def _no_workers(loaders=LOADERS) -> List[str]:
    return [f'{loader}.{key}' for loader in loaders
            for key in ('num_workers=0', 'persistent_workers=False')]


def _eval_options(indices: Optional[int] = NUM_VAL) -> List[str]:
    """One sample per evaluation batch (so that every sample meets the same
    kernels with one or several processes) on ``indices`` samples."""
    options = []
    for loader in LOADERS[1:]:
        options.append(f'{loader}.batch_size=1')
        if indices:
            options.append(f'{loader}.dataset.indices={indices}')
    return options


def _fine_tune_options(pretrain: str) -> List[str]:
    return [f'model.backbone.init_cfg.checkpoint={pretrain}']


# Each task: its config, what it starts from ('vqkd': the tokenizer of the
# matrix, 'pretrain': its pretrained backbone), its cfg-options beyond the
# common ones, whether it has a test loop and whether the validation at the
# end of training must give the test metrics of the checkpoint.
TASKS: Dict[str, dict] = {
    'vqkd': dict(config='configs/demo/vqkd-color_vit-tiny-p8_demo-tokenizer.py',
                 options=['train_dataloader.batch_size=4'] + _eval_options()),
    'bsqvit': dict(config='configs/tokenizers/bsqvit_vit-tiny-p8_demo.py',
                   options=['train_dataloader.batch_size=4',
                            'custom_hooks=[]'] + _eval_options()),
    # QLIP stage 1 (image-text alignment with a BEiT-3 text tower) and
    # stage 2 (decoder with perceptual and adversarial losses, two
    # optimizers, MMSeparateDistributedDataParallel) from bsqvit's weights.
    'qlip': dict(config='configs/tokenizers/bsqvit-text_vit-tiny-p8_demo.py',
                 options=['train_dataloader.batch_size=4',
                          'custom_hooks=[]'] + _eval_options()),
    'qlip_stage2': dict(
        config='configs/tokenizers/bsqvit_vit-tiny-p8_stage2_demo.py',
        needs='bsqvit',
        options=['train_dataloader.batch_size=4', 'custom_hooks=[]',
                 'model.perceptual_loss.vgg_checkpoint='
                 'checkpoints/vgg16_random.pth',
                 'model.disc_start_iter=1'] + _eval_options()),
    'pretrain': dict(
        config='configs/demo/beit3-tiny-p8_demo-pretrain.py', needs='vqkd',
        options=[f'train_dataloader.{source}.{key}'
                 for source in ('image', 'text', 'pair')
                 for key in ('batch_size=2', 'num_workers=0',
                             'persistent_workers=False')],
        test=False),
    'cls': dict(config='configs/mmpretrain/beit3-tiny-p8_demo-cls.py',
                needs='pretrain',
                options=['train_dataloader.batch_size=4'] + _eval_options()),
    'det': dict(
        config='configs/mmdet/'
        'mask-rcnn_beit3-tiny-p8_simple-fpn_1xb8-300it_demo-shapes.py',
        needs='pretrain',
        options=['train_dataloader.batch_size=2'] + _eval_options(None)),
    'seg': dict(
        config='configs/mmseg/'
        'upernet_beit3-tiny-p8_1xb8-300it_demo-shapes-ade-48x48.py',
        needs='pretrain',
        options=['train_dataloader.batch_size=2',
                 'default_hooks.visualization.draw=False'] +
        _eval_options(None),
        # BatchNorm without SyncBN (none on CPU): each rank keeps its own
        # running statistics, the checkpoint holds rank 0's, so the
        # validation at the end of training (every rank with its own)
        # differs from the checkpoint's. The GPU recipes use SyncBN.
        val_equals_test=False),
    'retrieval': dict(config='configs/demo/beit3-tiny-p8_demo-vl-retrieval.py',
                      needs='pretrain',
                      options=['train_dataloader.batch_size=4'] +
                      _eval_options()),
    'vqa': dict(config='configs/demo/beit3-tiny-p8_demo-vl-vqa.py',
                needs='pretrain',
                options=['train_dataloader.batch_size=4'] + _eval_options()),
    'nlvr2': dict(config='configs/demo/beit3-tiny-p8_demo-vl-nlvr2.py',
                  needs='pretrain',
                  options=['train_dataloader.batch_size=4'] +
                  _eval_options()),
    'caption': dict(config='configs/demo/beit3-tiny-p8_demo-vl-caption.py',
                    needs='pretrain',
                    options=['train_dataloader.batch_size=4',
                             'model.max_length=8'] + _eval_options()),
}


def make_data(root: str) -> Dict[str, int]:
    """Tiny versions of the demo datasets under ``root/data`` (the
    configs' relative data roots), about 20 s on one core."""
    from mmvlp.datasets import (make_demo_ade, make_demo_coco,
                                make_demo_dataset, make_demo_vl_dataset)
    from mmvlp.datasets.demo_classification import write_demo_classification
    from mmvlp.text import train_sentencepiece
    data = osp.join(root, 'data')
    counts = {}
    pretrain = osp.join(data, 'demo_pretrain')
    make_demo_dataset(pretrain, num_train=24, num_val=NUM_VAL, size=48)
    train_sentencepiece(osp.join(pretrain, 'captions_train.jsonl'),
                        osp.join(pretrain, 'text_spm'), vocab_size=160,
                        model_type='bpe', field='caption')
    make_demo_dataset(osp.join(data, 'demo'), num_train=8, num_val=NUM_VAL,
                      size=64)
    make_demo_dataset(osp.join(data, 'demo_cls'), num_train=24, num_val=16,
                      size=48, seed=1)
    write_demo_classification(osp.join(data, 'demo_cls'))
    counts.update(make_demo_coco(osp.join(data, 'demo_coco'), 8, NUM_VAL,
                                 seed=1))
    counts.update(make_demo_ade(osp.join(data, 'demo_ade'), 8, NUM_VAL,
                                seed=1))
    counts.update(make_demo_vl_dataset(osp.join(data, 'demo_vl'), 24,
                                       NUM_VAL, num_nlvr2=(16, NUM_VAL)))
    train_sentencepiece(osp.join(data, 'demo', 'captions_train.jsonl'),
                        osp.join(data, 'demo', 'text_spm'), vocab_size=60,
                        field='caption')
    _random_vgg(osp.join(root, 'checkpoints', 'vgg16_random.pth'))
    return counts


def _random_vgg(path: str) -> None:
    """VGG-16 features with random weights in torchvision's layout: a
    stand-in for the weights QLIP stage 2's perceptual loss reads."""
    import torch
    from torchvision.models import vgg16
    torch.manual_seed(0)
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({k: v.half() for k, v in vgg16(weights=None).state_dict(
    ).items() if k.startswith('features.')}, path)


def _children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _env(nproc: int) -> Dict[str, str]:
    """The environment of a run: this interpreter, a free port and the
    host's cores shared by the processes (one thread each on 2 cores)."""
    env = dict(os.environ, PYTHON=sys.executable,
               PORT=str(_free_port()))
    env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // nproc))
    env['PYTHONPATH'] = REPO + (
        os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    return env


_METRIC = re.compile(r'^([^\s:]+): (-?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan))$',
                     re.MULTILINE)


def parse_metrics(output: str) -> Dict[str, float]:
    """The ``name: value`` lines ``tools/test.py`` prints (first of each
    name: every rank prints the same)."""
    metrics = {}
    for name, value in _METRIC.findall(output):
        metrics.setdefault(name, float(value))
    return metrics


_VAL_LINE = re.compile(r'Iter\(val\) \[(\d+)/\1\]\s+(.*)$', re.MULTILINE)


def parse_val_log(output: str) -> Dict[str, float]:
    """The metrics of the last validation a training log reports (the
    logger rounds them to 4 decimals)."""
    lines = _VAL_LINE.findall(output)
    if not lines:
        return {}
    metrics = {}
    for name, value in re.findall(r'(\S+): (\S+)', lines[-1][1]):
        if name in ('data_time', 'time'):
            continue
        try:
            metrics[name] = float(value)
        except ValueError:
            pass
    return metrics


class Matrix:
    """Runs the tools and records what happened.

    Args:
        work_dir (str): Where data, checkpoints and logs go (the runs'
            current directory).
        nproc (int): Processes per distributed run.
        iters (int): Training iterations per run.
    """

    def __init__(self, work_dir: str, nproc: int, iters: int) -> None:
        self.work_dir = work_dir
        self.nproc = nproc
        self.iters = iters
        self.records: Dict[str, dict] = {}
        self.failures: List[str] = []

    def run(self, name: str, args: List[str],
            nproc: int) -> Optional[str]:
        """Run a command of ``nproc`` processes from the work dir; its
        output goes to ``logs/NAME.log``. Returns the output, or None when
        it failed."""
        log = osp.join(self.work_dir, 'logs', f'{name}.log')
        os.makedirs(osp.dirname(log), exist_ok=True)
        start, cpu = time.time(), _children_cpu()
        result = subprocess.run(args, cwd=self.work_dir, env=_env(nproc),
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        seconds = round(time.time() - start, 1)
        cpu = round(_children_cpu() - cpu, 1)
        with open(log, 'w') as f:
            f.write(result.stdout)
        self.records[name] = dict(seconds=seconds, cpu_seconds=cpu,
                                  rc=result.returncode)
        status = 'ok' if result.returncode == 0 else \
            f'FAILED (exit {result.returncode}, see {log})'
        print(f'{name:<24} {seconds:6.1f} s ({cpu:6.1f} CPU s)  {status}',
              flush=True)
        if result.returncode != 0:
            self.failures.append(f'{name}: exit {result.returncode} ({log})')
            print('\n'.join(result.stdout.splitlines()[-25:]), flush=True)
            return None
        return result.stdout

    def options(self, task: str, checkpoints: Dict[str, str]) -> List[str]:
        spec = TASKS[task]
        options = list(spec['options'])
        needs = spec.get('needs')
        if needs == 'vqkd':
            options.append(f'model.tokenizer_checkpoint={checkpoints[needs]}')
        elif needs == 'bsqvit':
            options.append(f'load_from={checkpoints[needs]}')
        elif needs == 'pretrain':
            options += _fine_tune_options(checkpoints[needs])
        if task not in ('pretrain', ):
            options += _no_workers()
        options += ['randomness.seed=0']
        return options

    def train(self, task: str, checkpoints: Dict[str, str]) -> Optional[str]:
        """``dist_train.sh`` for ``iters`` iterations (with the config's
        validation at the end); returns the last checkpoint."""
        spec = TASKS[task]
        work = osp.join('work_dirs', task)
        options = self.options(task, checkpoints) + [
            f'train_cfg.max_iters={self.iters}',
            f'default_hooks.checkpoint.interval={self.iters}',
            'default_hooks.logger.interval=1']
        if spec.get('test', True):
            options.append(f'train_cfg.val_interval={self.iters}')
        output = self.run(f'{task}/train', [
            'bash', osp.join(REPO, 'tools', 'dist_train.sh'),
            osp.join(REPO, spec['config']), str(self.nproc),
            '--work-dir', work, '--cfg-options'] + options, self.nproc)
        if output is None:
            return None
        checkpoint = osp.join(self.work_dir, work, f'iter_{self.iters}.pth')
        if not osp.exists(checkpoint):
            self.failures.append(f'{task}: no {checkpoint}')
            return None
        self.records[f'{task}/train']['val'] = parse_val_log(output)
        return checkpoint

    def test(self, task: str, checkpoint: str, checkpoints: Dict[str, str],
             nproc: int) -> Optional[Dict[str, float]]:
        """Evaluate with ``dist_test.sh`` (``nproc`` > 1) or
        ``tools/test.py``; returns the metrics."""
        spec = TASKS[task]
        config = osp.join(REPO, spec['config'])
        work = osp.join('work_dirs', task, f'test_{nproc}')
        tail = ['--work-dir', work, '--cfg-options'] + \
            self.options(task, checkpoints)
        if nproc > 1:
            args = ['bash', osp.join(REPO, 'tools', 'dist_test.sh'), config,
                    checkpoint, str(nproc)] + tail
        else:
            args = [sys.executable, osp.join(REPO, 'tools', 'test.py'),
                    config, checkpoint] + tail
        output = self.run(f'{task}/test_{nproc}', args, nproc)
        if output is None:
            return None
        metrics = parse_metrics(output)
        if not metrics:
            self.failures.append(f'{task}/test_{nproc}: no metrics printed')
        self.records[f'{task}/test_{nproc}']['metrics'] = metrics
        return metrics

    def compare(self, task: str, many: Dict[str, float],
                one: Dict[str, float], digits: Optional[int] = None) -> None:
        """Metrics of ``nproc`` processes and of one must be equal (to
        ``digits`` decimals when given)."""
        if digits is not None:
            many = {k: round(v, digits) for k, v in many.items()}
            one = {k: round(v, digits) for k, v in one.items()}
        differ = {k: (many.get(k), one.get(k)) for k in set(many) | set(one)
                  if many.get(k) != one.get(k) and not (
                      many.get(k) != many.get(k) and one.get(k) != one.get(k))}
        if differ:
            self.failures.append(
                f'{task}: {self.nproc} processes and 1 differ: {differ}')
            print(f'{task:<24} metrics DIFFER: {differ}', flush=True)
        else:
            print(f'{task:<24} {self.nproc} processes == 1 process: '
                  f'{many}', flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/dist_matrix')
    parser.add_argument('--nproc', type=int, default=2)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS),
                        default=list(TASKS))
    parser.add_argument('--no-compare', action='store_true',
                        help='skip the one-process evaluations')
    parser.add_argument('--keep', action='store_true',
                        help='keep an existing work dir (data included)')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    work_dir = osp.abspath(args.work_dir)
    if osp.isdir(work_dir) and not args.keep:
        shutil.rmtree(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    start = time.time()
    if not osp.isdir(osp.join(work_dir, 'data', 'demo_vl')):
        sys.path.insert(0, REPO)
        counts = make_data(work_dir)
        print(f'data: {counts} ({time.time() - start:.0f} s)', flush=True)
    matrix = Matrix(work_dir, args.nproc, args.iters)
    checkpoints: Dict[str, str] = {}
    wanted = set(args.tasks)
    # What the wanted tasks start from is trained too (with --keep, a
    # checkpoint of an earlier matrix run is used instead).
    for task in list(wanted):
        while TASKS[task].get('needs'):
            task = TASKS[task]['needs']
            kept = osp.join(work_dir, 'work_dirs', task,
                            f'iter_{args.iters}.pth')
            if args.keep and task not in args.tasks and osp.exists(kept):
                checkpoints[task] = kept
            else:
                wanted.add(task)
    for task in (t for t in TASKS if t in wanted):
        needs = TASKS[task].get('needs')
        if needs and needs not in checkpoints:
            matrix.failures.append(f'{task}: skipped ({needs} failed)')
            continue
        checkpoint = matrix.train(task, checkpoints)
        if checkpoint is None:
            continue
        checkpoints[task] = checkpoint
        if not TASKS[task].get('test', True):
            continue
        many = matrix.test(task, checkpoint, checkpoints, args.nproc)
        val = matrix.records[f'{task}/train'].get('val', {})
        if many is not None and val and not args.no_compare and \
                TASKS[task].get('val_equals_test', True):
            # The validation at the end of training saw the same weights.
            matrix.compare(f'{task} (val in training)', many, val, 4)
        if many is not None and not args.no_compare:
            one = matrix.test(task, checkpoint, checkpoints, 1)
            if one is not None:
                matrix.compare(task, many, one)
    seconds = round(time.time() - start, 1)
    cpu = round(sum(r['cpu_seconds'] for r in matrix.records.values()), 1)
    summary = dict(nproc=args.nproc, iters=args.iters, seconds=seconds,
                   cpu_seconds=cpu,
                   failures=matrix.failures, runs=matrix.records)
    with open(osp.join(work_dir, 'matrix.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'{len(matrix.records)} runs in {seconds:.0f} s ({cpu:.0f} CPU s '
          'in the runs); '
          f'{len(matrix.failures)} failures', flush=True)
    for failure in matrix.failures:
        print(f'FAILED: {failure}', flush=True)
    return 1 if matrix.failures else 0


if __name__ == '__main__':
    sys.exit(main())
