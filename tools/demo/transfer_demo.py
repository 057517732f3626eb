"""The transfer demo: fine-tune the demo-pretrained tiny BEiT-3 and the same
model from scratch, with the same budget, on generated classification
(mmpretrain), detection (mmdet) and segmentation (mmseg) data.

The tasks ask about the objects' colours, which the demo pretraining
learned from its colour tokens and captions: the colour of the largest
object of a scene (8 classes), objects detected by colour (8 categories),
pixels labelled background or one of the colours (9 classes). The scenes
are drawn with another seed than the pretraining's. (The shape-labelled
configs, ``*demo-cls.py`` and ``*demo-shapes*``, also run; see
docs/transfer.md for why the demo does not use them.)

Usage:
    python tools/demo/transfer_demo.py [--pretrained CKPT]
        [--work-dir work_dirs/demo_transfer] [--data-root data]
        [--tasks cls det seg] [--max-iters N] [--jobs 1|2] [--check]
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
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
INITS = ('pretrained', 'scratch')

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
        # CocoMetric reports nothing when the detector found no object at
        # all (it logs "The testing results of the whole dataset is
        # empty"): an mAP of 0.
        empty_result=0.,
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
        'upernet_beit3-tiny-p8_1xb8-600it_demo-colors-ade-48x48.py',
        key='mIoU', metric='seg_mIoU',
        data='demo_ade_colors',
        make=['tools/data/make_demo_dense_data.py', 'ade', '{data}',
              '--label', 'color'],
        data_options=['train_dataloader.dataset.data_root={data}/',
                      'val_dataloader.dataset.data_root={data}/',
                      'test_dataloader.dataset.data_root={data}/']),
}


def demo_parser(description: str, work_dir: str, tasks: Sequence[str],
                data_root: str, data_help: str) -> argparse.ArgumentParser:
    """The options of the pretrained-vs-scratch demos (this one and
    ``vl_demo.py``); a demo adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--pretrained', default=None,
                        help='pretraining checkpoint (default: the one named '
                        'by work_dirs/demo/pretrain/last_checkpoint)')
    parser.add_argument('--work-dir', default=work_dir)
    parser.add_argument('--tasks', nargs='+', choices=list(tasks),
                        default=list(tasks))
    parser.add_argument('--data-root', default=data_root, help=data_help)
    parser.add_argument('--max-iters', type=int, default=None,
                        help='shorten every run to N iterations (smoke)')
    parser.add_argument('--jobs', type=int, default=2, choices=(1, 2),
                        help='2 runs the pretrained and the scratch run of '
                        'a task side by side, one thread each')
    parser.add_argument('--check', action='store_true',
                        help='exit 1 unless pretrained > scratch everywhere')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='more key=value overrides for every run')
    return parser


def parse_args() -> argparse.Namespace:
    return demo_parser(
        __doc__.split('\n\n')[0], 'work_dirs/demo_transfer', list(TASKS),
        'data', 'where the generated task datasets are (made there when '
        'missing)').parse_args()


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


def pretrained_checkpoint(path: Optional[str]) -> str:
    """The absolute path of ``path`` (``--pretrained``), else of
    :func:`default_checkpoint`; an error names a missing file."""
    checkpoint = path or default_checkpoint()
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Pretrained checkpoint {checkpoint} does '
                                'not exist.')
    return osp.abspath(checkpoint)


def last_validation(work_dir: str, key: str,
                    empty_result: Optional[float] = None) -> float:
    """``key`` of the last validation that mmengine's ``LocalVisBackend``
    wrote to ``<work_dir>/<timestamp>/vis_data/scalars.json``, or
    ``empty_result`` (when given) if no validation reported it."""
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
    if value is None and empty_result is not None:
        print(f'   no {key} in {work_dir}: counted as {empty_result}',
              flush=True)
        return empty_result
    if value is None:
        raise RuntimeError(f'No validation result {key!r} in {work_dir}: '
                           'the run did not reach its validation.')
    return value


#: mmengine's training log line: iteration, total and ETA.
TRAIN_LINE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?eta: (\S+)')


def progress_line(log: str) -> Optional[str]:
    """``iter N/M, eta H:MM:SS`` from the last training line of an mmengine
    log (None before the first one)."""
    try:
        with open(log, errors='replace') as f:
            matches = TRAIN_LINE.findall(f.read())
    except OSError:
        return None
    if not matches:
        return None
    done, total, eta = matches[-1]
    return f'iter {done}/{total}, eta {eta}'


def fine_tune(config: str, keys: Sequence[str], init: str,
              checkpoint: str, work_dir: str, options: Sequence[str] = (),
              max_iters: Optional[int] = None,
              empty_result: Optional[float] = None) -> Dict[str, float]:
    """One fine-tuning run: ``tools/train.py config`` in a subprocess.

    Args:
        config (str): Config path relative to the repository.
        keys (Sequence[str]): Validation results whose mean is the run's
            value (read from the last validation).
        init (str): ``'pretrained'`` (the backbone loads ``checkpoint``) or
            ``'scratch'`` (``model.backbone.init_cfg=None``).
        checkpoint (str): The pretraining checkpoint.
        work_dir (str): The run's work dir; its output goes to
            ``train_stdout.log`` there, and its iteration and ETA are
            printed every 30 s.
        options (Sequence[str]): More ``--cfg-options``.
        max_iters (int, optional): Shorten the run to this many iterations,
            validating and saving at the end.
        empty_result (float, optional): The value of a key that the
            (finished) run's validation did not report, e.g. 0 for COCO mAP
            when nothing was detected; by default that is an error.

    Returns:
        dict: ``value`` and ``seconds``.
    """
    if init not in INITS:
        raise ValueError(f'init must be one of {INITS}, got {init!r}.')
    options = list(options)
    if init == 'pretrained':
        options.append(f'model.backbone.init_cfg.checkpoint={checkpoint}')
    else:
        options.append('model.backbone.init_cfg=None')
    if max_iters is not None:
        options += [f'train_cfg.max_iters={max_iters}',
                    f'train_cfg.val_interval={max_iters}',
                    f'default_hooks.checkpoint.interval={max_iters}']
    command = [sys.executable, osp.join(REPO, 'tools', 'train.py'),
               osp.join(REPO, config), '--work-dir', work_dir,
               '--cfg-options'] + options
    os.makedirs(work_dir, exist_ok=True)
    log = osp.join(work_dir, 'train_stdout.log')
    start = time.time()
    with open(log, 'w') as f:
        process = subprocess.Popen(command, cwd=REPO, stdout=f,
                                   stderr=subprocess.STDOUT)
        shown, last_shown = None, 0.0
        while process.poll() is None:
            time.sleep(1)
            line = progress_line(log)
            if line is not None and line != shown and (
                    shown is None or time.time() - start > 30 + last_shown):
                print(f'   {init:<10} {line}', flush=True)
                shown, last_shown = line, time.time() - start
        result = process
    seconds = time.time() - start
    if result.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f'{config} ({init}) failed with exit code '
                           f'{result.returncode}; the end of {log}:\n{tail}')
    values = [last_validation(work_dir, key, empty_result) for key in keys]
    return dict(value=sum(values) / len(values), seconds=round(seconds, 1))


def compare(run: Callable[[str], Dict[str, float]],
            jobs: int = 1) -> Dict[str, Dict[str, float]]:
    """``run(init)`` for both initialisations, one after the other or (with
    ``jobs=2``) side by side with one thread each (set by the caller through
    :func:`use_jobs`), so both runs share the machine alike."""
    with ThreadPoolExecutor(jobs) as pool:
        futures = {init: pool.submit(run, init) for init in INITS}
        return {init: future.result() for init, future in futures.items()}


def use_jobs(jobs: int) -> None:
    """Two runs side by side get one thread each (their subprocesses
    inherit ``OMP_NUM_THREADS``)."""
    if jobs not in (1, 2):
        raise ValueError(f'jobs must be 1 or 2, got {jobs}.')
    if jobs == 2:
        os.environ['OMP_NUM_THREADS'] = '1'


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
    """The rows of ``metrics`` (keys not starting with ``_``) with the gain
    of pretraining, and a chance column when ``metrics['_chance']`` has
    one value per row."""
    chance = metrics.get('_chance')
    lines = [f'{"metric":<14}{"pretrained":>12}{"scratch":>10}{"gain":>9}' +
             (f'{"chance":>10}' if chance else '')]
    for name, row in metrics.items():
        if name.startswith('_'):
            continue
        lines.append(f'{name:<14}{row["pretrained"]:>12.2f}'
                     f'{row["scratch"]:>10.2f}'
                     f'{row["pretrained"] - row["scratch"]:>+9.2f}' +
                     (f'{chance[name]:>10.2f}' if chance else ''))
    return lines


def not_better(metrics: Dict[str, dict]) -> List[str]:
    """The metrics on which pretrained is not better than scratch."""
    return [name for name, row in metrics.items()
            if not name.startswith('_')
            and not row['pretrained'] > row['scratch']]


def report(metrics: Dict[str, dict], work_root: str, check: bool,
           legend: str = '') -> int:
    """Write ``<work_root>/metrics.json``, print the table (and
    ``legend``); the exit code: 1 when ``check`` is set and pretraining did
    not help everywhere."""
    os.makedirs(work_root, exist_ok=True)
    path = osp.join(work_root, 'metrics.json')
    with open(path, 'w') as f:
        json.dump(metrics, f, indent=2)
    print('\n'.join(table(metrics)))
    if legend:
        print(legend)
    seconds = metrics.get('_runs', {}).get('seconds')
    print(f'written: {path}' + (f' ({seconds:.0f} s)' if seconds else ''))
    worse = not_better(metrics)
    if worse:
        print('pretrained is not better than scratch on: ' + ', '.join(worse))
        return 1 if check else 0
    return 0


def main() -> int:
    args = parse_args()
    checkpoint = pretrained_checkpoint(args.pretrained)
    work_root = osp.abspath(args.work_dir)
    data_root = osp.abspath(args.data_root)
    metrics: Dict[str, dict] = {}
    runs: Dict[str, dict] = {}
    use_jobs(args.jobs)
    start = time.time()
    for task in args.tasks:
        make_data(task, data_root)
        spec = TASKS[task]
        data = osp.join(data_root, spec['data'])
        options = [o.format(data=data) for o in spec['data_options']]
        options += args.cfg_options
        print(f'== {task}: fine-tuning from pretrained and from scratch',
              flush=True)
        results = compare(
            lambda init: fine_tune(spec['config'], [spec['key']], init,
                                   checkpoint,
                                   osp.join(work_root, task, init), options,
                                   args.max_iters, spec.get('empty_result')),
            args.jobs)
        for init, result in results.items():
            runs[f'{task}/{init}'] = result
            print(f'   {init:<10} {spec["metric"]} = {result["value"]:.4f} '
                  f'({result["seconds"]:.0f} s)', flush=True)
        metrics[spec['metric']] = {
            init: result['value'] for init, result in results.items()}
    metrics['_runs'] = dict(pretrained=checkpoint, max_iters=args.max_iters,
                            seconds=round(time.time() - start, 1), **runs)
    return report(metrics, work_root, args.check)


if __name__ == '__main__':
    sys.exit(main())
