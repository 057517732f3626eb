"""Checkpoint files that survive a kill: atomic writes and a resume that
skips incomplete checkpoints.

mmengine 0.10.7 writes a checkpoint by opening its final name and writing
the bytes, then records the name in ``work_dir/last_checkpoint`` (again by
truncating and writing). A process killed in between leaves a partly
written checkpoint under its real name, or an empty ``last_checkpoint``,
and ``--resume`` then picks it and fails (or ``resume('')``). mmvlp:

* writes every local file that mmengine's ``LocalBackend.put`` writes
  (checkpoints included) to a hidden temporary file in the same folder,
  flushes it to disk and renames it over the final name: a file under a
  checkpoint's name is always complete;
* makes ``find_latest_checkpoint`` (what ``resume=True`` without a path
  uses) check the checkpoint it is about to return, and fall back to the
  newest complete ``iter_*.pth`` / ``epoch_*.pth`` with a warning when the
  recorded one is missing, empty or cut short;
* lets a ``last_checkpoint`` file stand for the checkpoint it names
  wherever a local checkpoint is loaded (``init_cfg``, ``load_from``,
  ``tools/test.py``), so configs can point at a run's latest checkpoint
  without knowing its iteration count
  (``work_dirs/demo/pretrain/last_checkpoint``).
"""
import os
import os.path as osp
import re
import zipfile
from typing import Optional, Union

from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.logging import print_log

__all__ = [
    'checkpoint_problem', 'find_resumable_checkpoint', 'atomic_write_bytes',
    'atomic_torch_save',
    'install_atomic_checkpoint_saving', 'install_resumable_checkpoint_search',
    'follow_checkpoint_pointer', 'install_checkpoint_pointers'
]

_CHECKPOINT_NAME = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


def _temporary_name(path: str) -> str:
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.{os.getpid()}.tmp')


def atomic_write_bytes(data: bytes, path: Union[str, os.PathLike]) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never partly written.

    The bytes go to a hidden temporary file beside ``path``
    (``.NAME.PID.tmp``), are flushed to disk and renamed over ``path``.
    A process killed on the way leaves ``path`` as it was and at most the
    temporary file, which the next successful write of ``path`` removes.

    Args:
        data (bytes): The content.
        path (str | PathLike): The destination (its folder is created).
    """
    path = os.fspath(path)
    folder, name = osp.split(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = _temporary_name(osp.join(folder, name))
    try:
        with open(temporary, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise
    try:  # make the rename itself durable
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError:
        pass
    stale = re.compile(rf'^\.{re.escape(name)}\.\d+\.tmp$')
    for other in os.listdir(folder):  # left by killed writers
        if stale.match(other):
            try:
                os.remove(osp.join(folder, other))
            except OSError:
                pass


def atomic_torch_save(obj, path: Union[str, os.PathLike]) -> None:
    """``torch.save(obj, path)`` that never leaves a partial or empty
    ``path``: the file is written under a hidden temporary name beside it
    and renamed when complete (removed when saving fails).

    Args:
        obj: What to save.
        path (str | PathLike): The destination (its folder is created).
    """
    import torch
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = _temporary_name(osp.abspath(path))
    try:
        torch.save(obj, temporary)
        os.replace(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise


def checkpoint_problem(path: Optional[str]) -> Optional[str]:
    """What makes ``path`` unusable for resuming, or None when it looks
    complete.

    A torch checkpoint is a zip archive whose directory is written last, so
    a file cut short has none. Folders (DeepSpeed checkpoints), remote
    paths and files in torch's legacy (non-zip) format are not inspected.

    Args:
        path (str, optional): The checkpoint.

    Returns:
        str | None: e.g. ``'does not exist'``, ``'is empty'``,
        ``'is cut short or corrupt (...)'``.
    """
    if not path:
        return 'is not named (last_checkpoint is empty)'
    if '://' in path or osp.isdir(path):
        return None
    if not osp.exists(path):
        return 'does not exist'
    if osp.getsize(path) == 0:
        return 'is empty'
    with open(path, 'rb') as file:
        if file.read(2) != b'PK':
            return None  # legacy torch format: nothing cheap to check
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        return f'is cut short or corrupt ({error})'
    if not any(name.endswith('data.pkl') for name in names):
        return 'is not a torch checkpoint (no data.pkl in the archive)'
    return None


def _complete_checkpoints(folder: str):
    """``(prefix, step, path)`` of the complete checkpoints in ``folder``."""
    found = []
    if not osp.isdir(folder):
        return found
    for name in os.listdir(folder):
        match = _CHECKPOINT_NAME.match(name)
        path = osp.join(folder, name)
        if match and checkpoint_problem(path) is None:
            found.append((match.group(1), int(match.group(2)), path))
    return found


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint that ``resume=True`` (``--resume`` without a path)
    should continue from.

    The one named in ``work_dir/last_checkpoint`` when it is complete
    (see :func:`checkpoint_problem`); otherwise, with a warning, the newest
    complete ``iter_N.pth`` / ``epoch_N.pth`` beside it (or in
    ``work_dir``); None when there is none (training starts from scratch,
    as mmengine does without ``last_checkpoint``).

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str | None: The checkpoint's path.
    """
    record = osp.join(work_dir, 'last_checkpoint')
    last = None
    if osp.exists(record):
        with open(record) as file:
            last = file.read().strip()
        problem = checkpoint_problem(last)
        if problem is None:
            return last
    folders = [work_dir]
    if last and osp.dirname(last) not in ('', work_dir):
        folders.insert(0, osp.dirname(last))
    prefix = _CHECKPOINT_NAME.match(osp.basename(last or ''))
    candidates = [item for folder in folders
                  for item in _complete_checkpoints(folder)]
    best = max(candidates, default=None, key=lambda item: (
        prefix is not None and item[0] == prefix.group(1), item[1]))
    choice = best[2] if best else None
    if last is None:
        if choice is None:
            print_log('Did not find last_checkpoint to be resumed.',
                      logger='current')
        else:
            print_log(f'{record} does not exist; resuming from the newest '
                      f'complete checkpoint, {choice}.',
                      logger='current', level=30)
        return choice
    print_log(
        f'{record} names {last!r}, which {problem} (a run killed while '
        'saving leaves this behind); ' +
        (f'resuming from the newest complete checkpoint, {choice}.'
         if choice else 'no complete checkpoint is left, so training '
         'starts from scratch.'),
        logger='current', level=30)
    return choice


def _atomic_put(self, obj: bytes, filepath) -> None:
    atomic_write_bytes(obj, filepath)


def install_atomic_checkpoint_saving() -> None:
    """Make mmengine's ``LocalBackend.put`` (used by ``save_checkpoint``)
    write atomically. Idempotent."""
    LocalBackend.put = _atomic_put


def install_resumable_checkpoint_search() -> None:
    """Make mmengine's ``find_latest_checkpoint`` (``resume=True`` without a
    path, in ``Runner``, ``FlexibleRunner`` and the strategies) skip
    incomplete checkpoints. Idempotent."""
    import mmengine.runner as runner_pkg
    from mmengine.runner import _flexible_runner, checkpoint, runner
    for module in (runner_pkg, checkpoint, runner, _flexible_runner):
        module.find_latest_checkpoint = find_resumable_checkpoint


POINTER_NAME = 'last_checkpoint'


def follow_checkpoint_pointer(path: str) -> str:
    """The checkpoint a ``last_checkpoint`` file names, else ``path``.

    mmengine writes the path of every checkpoint it saves to
    ``<work_dir>/last_checkpoint``. A relative name there is read as
    mmengine writes it (from the working directory) or, when that does not
    exist, from the pointer's folder.

    Args:
        path (str): A checkpoint path, or a ``last_checkpoint`` file.

    Raises:
        FileNotFoundError: The pointer is empty or names a missing file.
    """
    if not isinstance(path, str) or osp.basename(path) != POINTER_NAME or \
            not osp.isfile(path):
        return path
    with open(path) as f:
        target = f.read().strip()
    if not target:
        raise FileNotFoundError(
            f'{path} is empty (a run killed while saving?): point at a '
            'checkpoint file instead, e.g. the newest iter_*.pth there.')
    if not osp.isabs(target) and not osp.isfile(target):
        target = osp.join(osp.dirname(path), osp.basename(target))
    if not osp.isfile(target):
        raise FileNotFoundError(
            f'{path} names {target}, which does not exist: rerun the '
            'training that wrote it or point at another checkpoint.')
    return target


def install_checkpoint_pointers() -> None:
    """Make mmengine's local checkpoint loader follow ``last_checkpoint``
    files (:func:`follow_checkpoint_pointer`). Idempotent."""
    from mmengine.runner.checkpoint import CheckpointLoader
    loader = CheckpointLoader._schemes['']
    if getattr(loader, '_mmvlp_pointer', False):
        return

    def load(filename, *args, **kwargs):
        return loader(follow_checkpoint_pointer(filename), *args, **kwargs)

    load._mmvlp_pointer = True
    load._mmvlp_safe = getattr(loader, '_mmvlp_safe', False)
    CheckpointLoader._schemes[''] = load
