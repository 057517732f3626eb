"""Safe (``weights_only``) loading of mmengine checkpoints on torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True``. mmengine 0.10.7 checkpoints
carry a few non-tensor objects (the message hub's ``HistoryBuffer`` with its
numpy arrays, numpy scalars in ``meta``), so ``load_from`` and ``resume`` fail
on them. mmvlp keeps safe loading on and allow-lists exactly those types,
scoped to mmengine's checkpoint loaders. A checkpoint that carries anything
else is refused with :class:`UnsafeCheckpointError`; nothing in it runs.

``HistoryBuffer`` also pickles its statistics *functions* (which would need
``builtins.getattr`` on the allow-list and with it any callable); mmvlp stops
it from doing so, so new checkpoints hold data only.
"""
import contextlib
import functools
import pickle
import re
from typing import Callable, Iterator, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'UnsafeCheckpointError', 'checkpoint_safe_globals', 'safe_torch_load',
    'install_safe_checkpoint_loading', 'patch_history_buffer_pickling'
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside mmvlp's allow-list."""


def _numpy_globals() -> List:
    """The numpy objects that mmengine checkpoints pickle."""
    core = getattr(np, '_core', None) or np.core
    multiarray = core.multiarray
    allowed = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
               # Pickles written under numpy 1.x name ``numpy.core``.
               (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
               (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in ('Float64DType', 'Float32DType', 'Float16DType',
                     'Int64DType', 'Int32DType', 'Int16DType', 'Int8DType',
                     'UInt8DType', 'BoolDType'):
            if hasattr(dtypes, name):
                allowed.append(getattr(dtypes, name))
    return allowed


def allowed_checkpoint_globals() -> List:
    """Everything beyond tensors and containers that mmvlp lets load."""
    return [HistoryBuffer] + _numpy_globals()


@contextlib.contextmanager
def checkpoint_safe_globals() -> Iterator[None]:
    """Allow-list the mmengine checkpoint types inside a ``with`` block."""
    with torch.serialization.safe_globals(allowed_checkpoint_globals()):
        yield


_UNSUPPORTED = re.compile(r'GLOBAL ([\w.]+)')


def _refusal(source: str, error: Exception) -> UnsafeCheckpointError:
    match = _UNSUPPORTED.search(str(error))
    what = match.group(1) if match else 'an object outside the allow-list'
    hint = ''
    if what.split('.')[-1] == 'getattr':
        hint = (' Checkpoints saved by mmengine without mmvlp pickle '
                '`getattr` through their message hub; re-save the weights '
                'with mmvlp (or keep only `state_dict`).')
    return UnsafeCheckpointError(
        f'Refusing to load {source}: it carries a pickled `{what}`, which '
        'is not a tensor, a container or one of the mmengine/numpy types '
        'mmvlp allows, so it could run code. Nothing from it was executed.'
        f'{hint} If you trust the file, load it yourself with '
        '`torch.load(path, weights_only=False)` and save its `state_dict`.')


def _unreadable(source, error: Exception) -> Exception:
    """A one-line error for a file that is not a usable checkpoint (cut
    short, empty, text, a directory, missing; see
    :func:`mmvlp.checkpoint.inspection.load_error`), else ``error`` itself."""
    from mmvlp.checkpoint.inspection import load_error
    return load_error(source, error) or error


def _translate(source, error: Exception) -> Exception:
    """What to raise for ``error`` of ``torch.load``: a file error, the
    refusal of an unsafe pickle, or ``error`` itself."""
    clearer = _unreadable(source, error)
    if clearer is not error:
        return clearer
    if isinstance(error, pickle.UnpicklingError) and not isinstance(
            error, UnsafeCheckpointError):
        return _refusal(str(source), error)
    return error


#: Called with ``(source, checkpoint)`` after each successful safe load;
#: :func:`mmvlp.checkpoint.loading.install_checked_loading` adds the note
#: its fit checks read (this module does not import that layer).
LOAD_OBSERVERS: List[Callable] = []


def _note(source, checkpoint) -> None:
    for observer in LOAD_OBSERVERS:
        observer(source, checkpoint)


#: What ``torch.load`` raises on files that are not checkpoints.
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, KeyError, EOFError,
                OSError, ValueError)


def safe_torch_load(path, map_location=None):
    """``torch.load(..., weights_only=True)`` with mmengine types allowed.

    Args:
        path (str | PathLike | file): The checkpoint.
        map_location: As :func:`torch.load`.

    Raises:
        UnsafeCheckpointError: The file carries a disallowed object.
    """
    with checkpoint_safe_globals():
        try:
            checkpoint = torch.load(path, map_location=map_location,
                                    weights_only=True)
        except _LOAD_ERRORS as error:
            translated = _translate(path, error)
            if translated is error:
                raise
            raise translated from None
    _note(path, checkpoint)
    return checkpoint


def _safe_loader(loader: Callable) -> Callable:
    """Wrap an mmengine scheme loader so it loads safely."""
    if getattr(loader, '_mmvlp_safe', False):
        return loader

    @functools.wraps(loader)
    def wrapped(filename, *args, **kwargs):
        with checkpoint_safe_globals():
            try:
                checkpoint = loader(filename, *args, **kwargs)
            except _LOAD_ERRORS as error:
                translated = _translate(filename, error)
                if translated is error:
                    raise
                raise translated from None
        _note(filename, checkpoint)
        return checkpoint

    wrapped._mmvlp_safe = True
    return wrapped


def install_safe_checkpoint_loading() -> None:
    """Make every mmengine checkpoint scheme load with the allow-list.

    Idempotent. Leaves ``weights_only`` on: torch's own default is unchanged.
    """
    schemes = CheckpointLoader._schemes
    for prefix, loader in list(schemes.items()):
        schemes[prefix] = _safe_loader(loader)


def _history_getstate(self) -> dict:
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _history_setstate(self, state: dict) -> None:
    state = dict(state)
    # Older pickles carry the statistics functions; the class already has
    # them (statistics are registered on the class, not per instance).
    state.pop('statistics_methods', None)
    self._set_default_statistics()
    self.__dict__.update(state)


def patch_history_buffer_pickling() -> None:
    """Stop ``HistoryBuffer`` from pickling its statistics functions."""
    HistoryBuffer.__getstate__ = _history_getstate
    HistoryBuffer.__setstate__ = _history_setstate
