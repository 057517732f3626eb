"""The transfer demo: fine-tune the demo-pretrained tiny BEiT-3 and the same
model from scratch, with the same budget, on generated classification
(mmpretrain), detection (mmdet) and segmentation (mmseg) data.

The tasks ask about the objects' colours, which the demo pretraining
learned from its colour tokens and captions: the colour of the largest
object of a scene (8 classes), objects detected by colour (8 categories),
pixels labelled background or one of the colours (9 classes). The scenes
are drawn with another seed than the pretraining's. (The shape-labelled
configs, ``*demo-cls.py`` and ``*demo-shapes*``, also run; see the
README for why the demo does not use them.)

Usage:
    python tools/demo/transfer_demo.py [--pretrained CKPT]
        [--work-dir work_dirs/demo_transfer] [--data-root data]
        [--tasks cls det seg] [--max-iters N] [--check]
        [--cfg-options key=value ...]

Each run is ``tools/train.py CONFIG`` in its own process, with the toolbox's
own runner, dataset and metric (mmpretrain ``Accuracy``, mmdet
``CocoMetric``, mmseg ``IoUMetric``), evaluated on the held-out split at
the end of training. The scratch run differs only by
``model.backbone.init_cfg=None``. Writes ``metrics.json``::

    {"cls_top1": {"pretrained": x, "scratch": y}, "det_bbox_mAP": ...,
     "seg_mIoU": ...}

plus the number of iterations and seconds of each run. ``--check`` exits 1
unless pretrained > scratch on every task. ``--max-iters`` shortens every
run (a smoke test; the comparison then means little).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

# Each task: its config, the key of its validation result, the name in
# metrics.json (top-1 and mIoU in %, bbox mAP in [0, 1], as the toolboxes
# report them), its data folder, the command that generates it and the
# options that point the config there (the dense configs end roots in '/').
# Data folders are relative to --data-root.
TASKS = {
    'cls': dict(
        config='configs/mmpretrain/beit3-tiny-p8_demo-cls-colors.py',
        key='accuracy/top1', metric='cls_top1',
        data='demo_cls_colors',
        make=['tools/data/make_demo_cls_data.py', '--out', '{data}',
              '--label', 'color'],
        data_options=['train_dataloader.dataset.data_root={data}',
                      'val_dataloader.dataset.data_root={data}',
                      'test_dataloader.dataset.data_root={data}']),
    'det': dict(
        config='configs/mmdet/'
        'mask-rcnn_beit3-tiny-p8_simple-fpn_1xb8-300it_demo-colors.py',
        key='coco/bbox_mAP', metric='det_bbox_mAP',
        data='demo_coco_colors',
        make=['tools/data/make_demo_dense_data.py', 'coco', '{data}',
              '--label', 'color'],
        data_options=['train_dataloader.dataset.data_root={data}/',
                      'val_dataloader.dataset.data_root={data}/',
                      'test_dataloader.dataset.data_root={data}/',
                      'val_evaluator.ann_file={data}/annotations/'
                      'instances_val2017.json',
                      'test_evaluator.ann_file={data}/annotations/'
                      'instances_val2017.json']),
    'seg': dict(
        config='configs/mmseg/'
        'upernet_beit3-tiny-p8_1xb8-300it_demo-colors-ade-48x48.py',
        key='mIoU', metric='seg_mIoU',
        data='demo_ade_colors',
        make=['tools/data/make_demo_dense_data.py', 'ade', '{data}',
              '--label', 'color'],
        data_options=['train_dataloader.dataset.data_root={data}/',
                      'val_dataloader.dataset.data_root={data}/',
                      'test_dataloader.dataset.data_root={data}/']),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pretrained', default=None,
                        help='pretraining checkpoint (default: the one named '
                        'by work_dirs/demo/pretrain/last_checkpoint)')
    parser.add_argument('--work-dir', default='work_dirs/demo_transfer')
    parser.add_argument('--data-root', default='data',
                        help='where the generated task datasets are (made '
                        'there when missing)')
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS),
                        default=list(TASKS))
    parser.add_argument('--max-iters', type=int, default=None,
                        help='shorten every run to N iterations (smoke)')
    parser.add_argument('--check', action='store_true',
                        help='exit 1 unless pretrained > scratch everywhere')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='more key=value overrides for every run')
    return parser.parse_args()


def default_checkpoint() -> str:
    """The last checkpoint of ``make demo``'s pretraining."""
    pointer = osp.join(REPO, 'work_dirs', 'demo', 'pretrain',
                       'last_checkpoint')
    if not osp.isfile(pointer):
        raise FileNotFoundError(
            f'{pointer} does not exist: run `make demo` first (it pretrains '
            'the tiny BEiT-3), or pass --pretrained CHECKPOINT.')
    with open(pointer) as f:
        return f.read().strip()


def last_validation(work_dir: str, key: str) -> float:
    """``key`` of the last validation that mmengine's ``LocalVisBackend``
    wrote to ``<work_dir>/<timestamp>/vis_data/scalars.json``."""
    runs = sorted(d for d in os.listdir(work_dir)
                  if osp.isfile(osp.join(work_dir, d, 'vis_data',
                                         'scalars.json')))
    if not runs:
        raise RuntimeError(f'{work_dir} holds no vis_data/scalars.json: the '
                           'run did not log any scalars (see its log).')
    value = None
    with open(osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')) as f:
        for line in f:
            record = json.loads(line)
            if key in record:
                value = float(record[key])
    if value is None:
        raise RuntimeError(f'No validation result {key!r} in {work_dir}: '
                           'the run did not reach its validation.')
    return value


def run_one(task: str, init: str, checkpoint: str, work_dir: str,
            max_iters: Optional[int], data_root: str,
            extra_options: Sequence[str] = ()) -> Dict[str, float]:
    """Train one task from one initialisation; its metric and seconds."""
    spec = TASKS[task]
    data = osp.join(data_root, spec['data'])
    options = [o.format(data=data) for o in spec['data_options']]
    if init == 'pretrained':
        options.append(f'model.backbone.init_cfg.checkpoint={checkpoint}')
    else:
        options.append('model.backbone.init_cfg=None')
    if max_iters is not None:
        options += [f'train_cfg.max_iters={max_iters}',
                    f'train_cfg.val_interval={max_iters}']
        if task != 'cls':  # cls validates every val_interval iterations
            options.append(f'default_hooks.checkpoint.interval={max_iters}')
    options += list(extra_options)
    command = [sys.executable, osp.join(REPO, 'tools', 'train.py'),
               osp.join(REPO, spec['config']), '--work-dir', work_dir,
               '--cfg-options'] + options
    os.makedirs(work_dir, exist_ok=True)
    log = osp.join(work_dir, 'train_stdout.log')
    start = time.time()
    with open(log, 'w') as f:
        result = subprocess.run(command, cwd=REPO, stdout=f,
                                stderr=subprocess.STDOUT)
    seconds = time.time() - start
    if result.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f'{task} ({init}) failed with exit code '
                           f'{result.returncode}; the end of {log}:\n{tail}')
    value = last_validation(work_dir, spec['key'])
    return dict(value=value, seconds=round(seconds, 1))


def make_data(task: str, data_root: str) -> None:
    """Generate a task's dataset under ``data_root`` unless it is there."""
    spec = TASKS[task]
    data = osp.join(data_root, spec['data'])
    if osp.isdir(data) and os.listdir(data):
        return
    command = [sys.executable, osp.join(REPO, spec['make'][0])] + [
        a.format(data=data) for a in spec['make'][1:]]
    subprocess.run(command, cwd=REPO, check=True)


def table(metrics: Dict[str, dict]) -> List[str]:
    lines = [f'{"metric":<14}{"pretrained":>12}{"scratch":>10}{"gain":>9}']
    for name, row in metrics.items():
        if name.startswith('_'):
            continue
        lines.append(f'{name:<14}{row["pretrained"]:>12.2f}'
                     f'{row["scratch"]:>10.2f}'
                     f'{row["pretrained"] - row["scratch"]:>+9.2f}')
    return lines


def not_better(metrics: Dict[str, dict]) -> List[str]:
    """The metrics on which pretrained is not better than scratch."""
    return [name for name, row in metrics.items()
            if not name.startswith('_')
            and not row['pretrained'] > row['scratch']]


def main() -> int:
    args = parse_args()
    checkpoint = args.pretrained or default_checkpoint()
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Pretrained checkpoint {checkpoint} does '
                                'not exist.')
    checkpoint = osp.abspath(checkpoint)
    work_root = osp.abspath(args.work_dir)
    data_root = osp.abspath(args.data_root)
    metrics: Dict[str, dict] = {}
    runs: Dict[str, dict] = {}
    for task in args.tasks:
        make_data(task, data_root)
        row = {}
        for init in ('pretrained', 'scratch'):
            print(f'== {task}: fine-tuning from {init}', flush=True)
            result = run_one(task, init, checkpoint,
                             osp.join(work_root, task, init), args.max_iters,
                             data_root, args.cfg_options)
            row[init] = result['value']
            runs[f'{task}/{init}'] = result
            print(f'   {TASKS[task]["metric"]} = {result["value"]:.4f} '
                  f'({result["seconds"]:.0f} s)', flush=True)
        metrics[TASKS[task]['metric']] = row
    metrics['_runs'] = dict(pretrained=checkpoint, max_iters=args.max_iters,
                            **runs)
    os.makedirs(work_root, exist_ok=True)
    with open(osp.join(work_root, 'metrics.json'), 'w') as f:
        json.dump(metrics, f, indent=2)
    print('\n'.join(table(metrics)))
    print(f'written: {osp.join(work_root, "metrics.json")}')
    worse = not_better(metrics)
    if worse:
        print('pretrained is not better than scratch on: ' + ', '.join(worse))
        return 1 if args.check else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
