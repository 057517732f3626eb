"""Checkpoint files survive kills: atomic writes through mmengine's
``LocalBackend.put``, ``resume=True`` skipping incomplete checkpoints, and
a clear error for a checkpoint that is cut short. (The end-to-end SIGKILL
runs are in test_interruption.py.)"""
import os

import pytest
import torch
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.runner import load_checkpoint, runner
from mmengine.runner.checkpoint import save_checkpoint

import mmvlp  # noqa: F401  (applies the fixes)
from mmvlp.checkpoint import (atomic_write_bytes, checkpoint_problem,
                              find_resumable_checkpoint)
from mmvlp.compat.torch_load import safe_torch_load


def _save(path, value=1.):
    save_checkpoint({'state_dict': {'w': torch.full((64, ), value)}},
                    str(path))


def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'iter_2.pth'
    _save(path, 1.)
    old = path.read_bytes()

    def fail(fd):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='disk full'):
        _save(path, 2.)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ['iter_2.pth']  # no temporary left


def test_stale_temporary_files_are_removed(tmp_path):
    stale = tmp_path / '.iter_4.pth.12345.tmp'  # a killed writer's
    stale.write_bytes(b'PK\x03\x04 half')
    other = tmp_path / '.iter_6.pth.12345.tmp'
    other.write_bytes(b'')
    LocalBackend().put(b'data', tmp_path / 'iter_4.pth')
    assert sorted(os.listdir(tmp_path)) == [other.name, 'iter_4.pth']
    atomic_write_bytes(b'x', tmp_path / 'new' / 'file')  # makes the folder
    assert (tmp_path / 'new' / 'file').read_bytes() == b'x'


def test_checkpoint_problem(tmp_path):
    _save(tmp_path / 'iter_2.pth')
    assert checkpoint_problem(str(tmp_path / 'iter_2.pth')) is None
    assert checkpoint_problem(str(tmp_path / 'gone.pth')) == \
        'does not exist'
    assert checkpoint_problem('') == \
        'is not named (last_checkpoint is empty)'
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert checkpoint_problem(str(tmp_path / 'empty.pth')) == 'is empty'
    _save(tmp_path / 'cut.pth')
    _cut(tmp_path / 'cut.pth')
    assert checkpoint_problem(str(tmp_path / 'cut.pth')).startswith(
        'is cut short or corrupt')
    (tmp_path / 'deepspeed').mkdir()  # folders are not inspected
    assert checkpoint_problem(str(tmp_path / 'deepspeed')) is None


@pytest.mark.parametrize('last', ['', 'iter_6.pth', 'cut', None])
def test_resume_falls_back_to_the_newest_complete(tmp_path, last):
    for step in (2, 4, 10):
        _save(tmp_path / f'iter_{step}.pth')
    _cut(tmp_path / 'iter_10.pth')  # newest, but cut short
    (tmp_path / 'epoch_20.pth').write_bytes(b'')
    if last == 'cut':
        last = str(tmp_path / 'iter_10.pth')
    elif last:
        last = str(tmp_path / last)  # deleted (max_keep_ckpts) or never
    if last is not None:
        (tmp_path / 'last_checkpoint').write_text(last)
    # mmengine's Runner calls the patched function.
    assert runner.find_latest_checkpoint is find_resumable_checkpoint
    assert find_resumable_checkpoint(str(tmp_path)) == str(
        tmp_path / 'iter_4.pth')


def test_resume_keeps_a_complete_last_checkpoint(tmp_path):
    for step in (2, 4):
        _save(tmp_path / f'iter_{step}.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert find_resumable_checkpoint(str(tmp_path)) == str(
        tmp_path / 'iter_2.pth')
    assert find_resumable_checkpoint(str(tmp_path / 'none')) is None


def test_cut_checkpoint_gets_a_clear_error(tmp_path):
    path = tmp_path / 'iter_2.pth'
    _save(path)
    _cut(path)
    message = r'iter_2\.pth: the file is cut short or corrupt.*earlier ' \
        r'checkpoint'
    with pytest.raises(RuntimeError, match=message):
        load_checkpoint(torch.nn.Linear(1, 1), str(path), logger='silent')
    with pytest.raises(RuntimeError, match=message):
        safe_torch_load(path)


def test_last_checkpoint_stands_for_the_checkpoint_it_names(tmp_path,
                                                            monkeypatch):
    """init_cfg / load_from / tools/test.py can name a run's
    ``last_checkpoint`` instead of its final iter_N.pth."""
    from mmengine.runner.checkpoint import _load_checkpoint
    model = torch.nn.Linear(2, 2)
    run = tmp_path / 'run'
    run.mkdir()
    save_checkpoint({'state_dict': model.state_dict()},
                    str(run / 'iter_7.pth'))
    pointer = run / 'last_checkpoint'
    pointer.write_text(str(run / 'iter_7.pth'))
    other = torch.nn.Linear(2, 2)
    load_checkpoint(other, str(pointer), logger='silent')
    assert torch.equal(other.weight, model.weight)
    # A relative name that does not resolve from the working directory is
    # read from the pointer's folder (a copied work dir).
    pointer.write_text('elsewhere/work_dirs/run/iter_7.pth')
    monkeypatch.chdir(tmp_path)
    assert torch.equal(_load_checkpoint(str(pointer))['state_dict'][
        'weight'], model.weight)
    pointer.write_text('')
    with pytest.raises(FileNotFoundError, match='is empty'):
        _load_checkpoint(str(pointer))
    pointer.write_text(str(run / 'iter_8.pth'))
    with pytest.raises(FileNotFoundError, match='names .*iter_8.pth, which '
                       'does not exist'):
        _load_checkpoint(str(pointer))
    # Other files are loaded as they are.
    assert _load_checkpoint(str(run / 'iter_7.pth'))['state_dict']
