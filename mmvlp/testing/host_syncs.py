"""Find the operations of a training step that make the host wait for an
accelerator, on any device.

On a GPU, ``torch.cuda.set_sync_debug_mode('warn')`` reports every sync;
CPU-only hosts have no such switch. :class:`HostSyncCensus` counts, in a
block of code, the operators that need a device value on the host, which
are the syncs a GPU would see: ``_local_scalar_dense`` (``.item()``,
``int()``, ``bool()``, ``float()`` of a tensor, Python ``if`` on one),
``nonzero`` (boolean indexing, ``masked_select``), ``unique``, and
``repeat_interleave`` without an output size. Each is attributed to the
innermost frame of mmvlp (or of the caller) that issued it.

``.tolist()`` and ``.cpu()`` of CPU tensors do not reach the dispatcher:
they are not counted (on a GPU they are one device-to-host copy each).
"""
import collections
import os
import os.path as osp
import traceback
from typing import Counter, Dict, Optional, Sequence, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['HostSyncCensus', 'SYNC_OPS', 'relative_source_path']

#: Operators whose result the host needs before it can go on.
SYNC_OPS = ('aten._local_scalar_dense', 'aten.nonzero', 'aten.masked_select',
            'aten._unique2', 'aten.unique_consecutive', 'aten.unique_dim',
            'aten.repeat_interleave.Tensor')


def _is_sync(func, args) -> Optional[str]:
    name = str(func)
    for op in SYNC_OPS:
        if name.startswith(op):
            return op
    if name.startswith('aten.index.Tensor') and len(args) > 1 and any(
            t is not None and t.dtype == torch.bool for t in args[1]):
        return 'aten.index (boolean mask)'
    return None


#: The folder that holds the ``mmvlp`` package (the repository of an
#: editable install).
_PACKAGE_PARENT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def relative_source_path(path: str) -> str:
    """A frame's file relative to ``site-packages`` (``torch/...``,
    ``mmengine/...``) or to the folder that holds ``mmvlp`` (``mmvlp/...``,
    ``tests/...``), so that a checkout or virtualenv whose path contains
    ``mmvlp`` is not taken for the package."""
    if '/site-packages/' in path:
        return path.rsplit('/site-packages/', 1)[1]
    if path.startswith(_PACKAGE_PARENT + os.sep):
        return path[len(_PACKAGE_PARENT) + 1:]
    return path


class HostSyncCensus(TorchDispatchMode):
    """Count the host syncs of the code run inside ``with``.

    Args:
        packages (Sequence[str]): Path fragments (e.g. ``'/mmvlp/'``,
            ``'/torch/optim/'``) of the frames a sync is attributed to (the
            innermost match), matched against the frame's file relative to
            ``site-packages`` or to the folder that holds ``mmvlp``; others
            are attributed to the innermost frame outside torch.

    Attributes:
        syncs (Counter): ``(operator, 'file:line')`` -> count.
    """

    def __init__(self, packages: Sequence[str] = ('/mmvlp/', )) -> None:
        super().__init__()
        self.packages = tuple(packages)
        self.syncs: Counter[Tuple[str, str]] = collections.Counter()

    def _where(self) -> str:
        frames = traceback.extract_stack()[:-3]
        for frame in reversed(frames):
            where = '/' + relative_source_path(frame.filename)
            if any(p in where for p in self.packages):
                return self._short(frame)
        for frame in reversed(frames):
            if not relative_source_path(frame.filename).startswith('torch/'):
                return self._short(frame)
        return 'unknown'

    @staticmethod
    def _short(frame) -> str:
        return f'{relative_source_path(frame.filename)}:{frame.lineno}'

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        op = _is_sync(func, args)
        if op is not None:
            self.syncs[(op, self._where())] += 1
        return func(*args, **(kwargs or {}))

    def by_place(self) -> Dict[str, int]:
        """Counts per ``file:line`` (operators merged)."""
        places: Dict[str, int] = collections.Counter()
        for (_, where), count in self.syncs.items():
            places[where] += count
        return dict(places)
