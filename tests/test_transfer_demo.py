"""tools/demo/transfer_demo.py (`make demo-transfer`): its result parsing
and comparison, and one shortened end-to-end run (cls, pretrained and
scratch) through tools/train.py on generated data."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from helpers.transfer import demo_pretrain_checkpoint

from mmvlp.datasets import make_demo_dataset
from mmvlp.datasets.demo_classification import write_demo_classification

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
SCRIPT = osp.join(REPO, 'tools', 'demo', 'transfer_demo.py')


def _load_script():
    spec = importlib.util.spec_from_file_location('transfer_demo', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_script()


def _scalars(work_dir, run, rows):
    folder = osp.join(work_dir, run, 'vis_data')
    os.makedirs(folder)
    with open(osp.join(folder, 'scalars.json'), 'w') as f:
        for row in rows:
            f.write(json.dumps(row) + '\n')


def test_last_validation_reads_the_newest_run(tmp_path):
    work_dir = str(tmp_path)
    _scalars(work_dir, '20260101_000000', [{'mIoU': 10.0}])
    _scalars(work_dir, '20260102_000000', [
        {'loss': 1.0, 'step': 1}, {'mIoU': 20.0, 'step': 100},
        {'loss': 0.5, 'step': 101}, {'mIoU': 30.0, 'step': 200}])
    assert demo.last_validation(work_dir, 'mIoU') == 30.0
    with pytest.raises(RuntimeError, match="No validation result 'aAcc'"):
        demo.last_validation(work_dir, 'aAcc')
    # A validation that reported nothing (COCO: no detection at all).
    assert demo.last_validation(work_dir, 'coco/bbox_mAP', 0.) == 0.
    with pytest.raises(RuntimeError, match='holds no vis_data'):
        demo.last_validation(str(tmp_path / '20260101_000000' / 'vis_data'),
                             'mIoU')


def test_comparison_and_table():
    metrics = {'cls_top1': {'pretrained': 60.0, 'scratch': 40.0},
               'seg_mIoU': {'pretrained': 30.0, 'scratch': 30.0},
               '_runs': {'max_iters': None}}
    assert demo.not_better(metrics) == ['seg_mIoU']
    lines = demo.table(metrics)
    assert len(lines) == 3 and '+20.00' in lines[1] and '+0.00' in lines[2]


def test_progress_line_reads_the_last_training_line(tmp_path):
    log = tmp_path / 'train_stdout.log'
    assert demo.progress_line(str(log)) is None  # not written yet
    log.write_text('12/05 00:01:02 - mmengine - INFO - Checkpoints ...\n')
    assert demo.progress_line(str(log)) is None
    log.write_text(
        '12/05 00:01:02 - mmengine - INFO - Iter(train) [ 10/300]  '
        'base_lr: 1.0e-03 lr: 1.0e-03  eta: 0:02:10  time: 0.4\n'
        '12/05 00:01:06 - mmengine - INFO - Iter(train) [ 20/300]  '
        'base_lr: 1.0e-03 lr: 1.0e-03  eta: 0:01:58  time: 0.4\n'
        '12/05 00:01:06 - mmengine - INFO - Iter(val) [4/8]  eta: 0:00:01\n')
    assert demo.progress_line(str(log)) == 'iter 20/300, eta 0:01:58'


def test_missing_pretraining_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'REPO', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='run `make demo` first'):
        demo.default_checkpoint()


def test_shortened_cls_run_end_to_end(tmp_path):
    data_root = tmp_path / 'data'
    cls_root = data_root / demo.TASKS['cls']['data']
    make_demo_dataset(str(cls_root), num_train=24, num_val=16, size=48,
                      seed=1)
    write_demo_classification(str(cls_root), label='color')
    checkpoint = str(tmp_path / 'iter_900.pth')
    demo_pretrain_checkpoint(checkpoint)
    work_dir = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    result = subprocess.run(
        [sys.executable, SCRIPT, '--pretrained', checkpoint, '--tasks', 'cls',
         '--max-iters', '1', '--data-root', str(data_root), '--work-dir',
         str(work_dir), '--cfg-options', 'train_dataloader.batch_size=8'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-3000:] +
                                    result.stderr[-3000:])
    with open(work_dir / 'metrics.json') as f:
        metrics = json.load(f)
    row = metrics['cls_top1']
    assert set(row) == {'pretrained', 'scratch'}
    assert all(0 <= v <= 100 for v in row.values())
    runs = metrics['_runs']
    assert runs['max_iters'] == 1 and runs['pretrained'] == checkpoint
    # The pretrained run loaded the checkpoint, the scratch run did not.
    pretrained_log = (work_dir / 'cls' / 'pretrained' /
                      'train_stdout.log').read_text()
    scratch_log = (work_dir / 'cls' / 'scratch' /
                   'train_stdout.log').read_text()
    assert checkpoint in pretrained_log and 'dropped' in pretrained_log
    assert checkpoint not in scratch_log
    assert 'pretrained' in result.stdout and 'cls_top1' in result.stdout
