"""A training run killed with SIGKILL at a random iteration, then killed
again in the middle of writing a checkpoint, continues with
``tools/train.py --resume`` to the same final weights as a run that was
never interrupted (bitwise, CPU, fixed seed: data order, masks, drop path).
"""
import os
import os.path as osp
import multiprocessing
import random
import runpy
import signal
import subprocess
import sys

import pytest
import torch
from helpers.demo_data import make_demo_with_spm
from test_pretrain_runner import _cfg

import mmvlp.models  # noqa: F401  (imported once, before the forks)
from mmvlp.checkpoint import checkpoint_problem
from mmvlp.compat.torch_load import safe_torch_load

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TESTS = osp.dirname(osp.abspath(__file__))
TOOL = osp.join(REPO, 'tools', 'train.py')
MAX_ITERS, INTERVAL = 6, 2


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    """The tiny demo pretraining config with drop path, checkpoints every
    2 iterations and the kill switch, as a file for tools/train.py."""
    root = tmp_path_factory.mktemp('interruption')
    demo = make_demo_with_spm(root / 'data', num_train=12, num_val=2)
    cfg = _cfg(demo, root / 'unused', max_iters=MAX_ITERS)
    for loader in cfg.train_dataloader.values():
        loader.batch_size = 2
    cfg.model.backbone.drop_path_rate = 0.1  # model randomness, as recipes
    # Smaller than the demo: small checkpoints, fast steps.
    cfg.model.backbone.arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                                   feedforward_channels=64)
    for part in ('encoder', 'decoder'):
        cfg.model.tokenizer[part].arch = dict(
            embed_dims=16, num_layers=1, num_heads=1, feedforward_channels=32)
    cfg.log_level = 'INFO'
    cfg.default_hooks.checkpoint.interval = INTERVAL
    cfg.custom_imports = dict(imports=['helpers.kill_switch'],
                              allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='KillSwitchHook')]
    path = str(root / 'tiny_pretrain.py')
    cfg.dump(path)
    return path


def _tools_train(argv, kill, log):
    """Body of a forked child: tools/train.py's main() with ``argv``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, 'w', buffering=1, closefd=False)
    sys.stderr = open(2, 'w', buffering=1, closefd=False)
    os.environ['MMVLP_TEST_KILL'] = kill
    torch.set_num_threads(1)
    os.chdir(REPO)
    sys.argv = [TOOL] + argv
    runpy.run_path(TOOL, run_name='__main__')


def _train(config, work_dir, kill='', resume=False, fresh=False):
    """Run tools/train.py on one CPU thread in a child process: a fresh
    interpreter (``fresh``) or, to save its ~10 s of imports, a fork of
    this one. Returns a handle for :func:`_finish`."""
    argv = [config, '--work-dir', str(work_dir)] + (
        ['--resume'] if resume else [])
    log = f'{work_dir}.out'
    if fresh:
        env = dict(os.environ, OMP_NUM_THREADS='1', MMVLP_TEST_KILL=kill,
                   PYTHONPATH=os.pathsep.join([REPO, TESTS]))
        process = subprocess.Popen([sys.executable, TOOL] + argv, cwd=REPO,
                                   env=env, stdout=open(log, 'w'),
                                   stderr=subprocess.STDOUT)
    else:
        process = multiprocessing.get_context('fork').Process(
            target=_tools_train, args=(argv, kill, log))
        process.start()
    return process, log


def _finish(handle, returncode=0):
    process, log = handle
    if isinstance(process, subprocess.Popen):
        process.wait(timeout=300)
        code = process.returncode
    else:
        process.join(timeout=300)
        if process.exitcode is None:
            process.kill()
        code = process.exitcode
    output = open(log).read()
    assert code == returncode, output[-5000:]
    return output


def _state(path):
    checkpoint = safe_torch_load(path)
    return checkpoint['state_dict'], checkpoint['optimizer']


def _assert_bitwise_equal(a, b, where=''):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_bitwise_equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_bitwise_equal(x, y, f'{where}[{index}]')
    else:
        assert a == b, where


def test_killed_twice_resumes_to_the_same_weights(config, tmp_path):
    seed = int(os.environ.get('MMVLP_TEST_SEED', random.randrange(10**6)))
    kill_at = random.Random(seed).randint(1, MAX_ITERS - 1)
    note = f'(MMVLP_TEST_SEED={seed}: SIGKILL after iteration {kill_at})'
    whole, broken = tmp_path / 'whole', tmp_path / 'broken'
    # A fresh interpreter, beside the interrupted run.
    reference = _train(config, whole, fresh=True)

    # 1. SIGKILL at a random iteration.
    _finish(_train(config, broken, kill=f'iter:{kill_at}'), -signal.SIGKILL)
    saved = kill_at // INTERVAL * INTERVAL
    if saved:
        assert open(broken / 'last_checkpoint').read().strip().endswith(
            f'iter_{saved}.pth'), note

    # 2. Resume, and get killed in the middle of writing the next
    #    checkpoint.
    cut = saved + INTERVAL
    output = _finish(_train(config, broken, kill=f'save:{cut}', resume=True),
                     -signal.SIGXFSZ)
    if saved:
        assert f'Resuming the data at iteration {saved}' in output, note
    # Nothing under a checkpoint's name is partly written: the bytes went
    # to a hidden temporary file, cut at the size limit.
    assert not (broken / f'iter_{cut}.pth').exists(), note
    partial = [name for name in os.listdir(broken)
               if name.startswith(f'.iter_{cut}.pth.')]
    assert len(partial) == 1, (os.listdir(broken), note)
    assert osp.getsize(broken / partial[0]) == int(
        open(broken / 'kill_limit').read()), note
    assert checkpoint_problem(str(broken / partial[0])), note
    for name in os.listdir(broken):
        if name.startswith('iter_'):
            assert checkpoint_problem(str(broken / name)) is None, name
    # A kill while mmengine rewrote last_checkpoint (it truncates, then
    # writes) leaves it empty; --resume must not pick that.
    (broken / 'last_checkpoint').write_text('')

    # 3. Resume to the end.
    output = _finish(_train(config, broken, resume=True))
    assert 'last_checkpoint' in output and 'names' in output and \
        'resuming from the newest complete checkpoint' in output or \
        not saved, output[-3000:]
    _finish(reference)
    final_whole = _state(whole / f'iter_{MAX_ITERS}.pth')
    final_broken = _state(broken / f'iter_{MAX_ITERS}.pth')
    _assert_bitwise_equal(final_whole, final_broken, note)
    assert not [name for name in os.listdir(broken)
                if name.endswith('.tmp')], 'stale temporary files'
