"""mmpretrain 1.2.0's retrieval metrics on NumPy 2.

``mmpretrain.evaluation.metrics.retrieval`` (``RetrievalRecall``,
``RetrievalAveragePrecision``) calls ``np.in1d``, which NumPy 2.4 removed
(``AttributeError: module 'numpy' has no attribute 'in1d'``). The fix gives
that module (only) a ``numpy`` whose ``in1d`` is ``np.isin`` on the flattened
first argument, which is what ``in1d`` computed; numpy itself is untouched.
"""
import types

import numpy as np


class _NumpyWithIn1d(types.ModuleType):
    """numpy, plus the ``in1d`` that NumPy 2.4 removed."""

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def in1d(ar1, ar2, assume_unique: bool = False,
             invert: bool = False) -> np.ndarray:
        return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique,
                       invert=invert)


def patch_mmpretrain_retrieval_in1d() -> bool:
    """Install the fix when NumPy lacks ``in1d``; returns whether it did."""
    if hasattr(np, 'in1d'):
        return False
    from mmpretrain.evaluation.metrics import retrieval
    if not isinstance(retrieval.np, _NumpyWithIn1d):
        retrieval.np = _NumpyWithIn1d('numpy')
    return True
