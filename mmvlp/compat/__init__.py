"""Fixes for the pinned stack (mmengine 0.10.7, deepspeed, torch FSDP,
mmpretrain 1.2.0 under NumPy 2), applied once at ``import mmvlp``.

Each fix patches behaviour in memory (never another package's files), is
idempotent, and is listed with its test in docs/compatibility.md. One
module per patched package; delete a fix when the upstream
release named below is the pinned one (and its test passes without it):

* :mod:`.torch_load` -- mmengine's checkpoints under torch >= 2.6's
  ``weights_only=True`` (an allow-list of exactly mmengine's types) and
  ``HistoryBuffer`` pickling data only. Unnecessary once the pinned mmengine
  (> 0.10.7) loads its own checkpoints with ``weights_only=True``. Test:
  tests/test_checkpoint_safety.py.
* :mod:`.strategies` -- mmengine's DeepSpeed / FSDP strategies: deepspeed
  0.19 lost ``deepspeed.runtime.fp16.onebit``; FSDP's
  ``optim_state_dict_to_load`` argument order (torch >= 2.1); FSDP gradient
  clipping by the whole model's norm; CPU-only hosts; deepspeed's
  ``weights_only=False`` loads. Unnecessary row by row as mmengine (> 0.10.7)
  and deepspeed fix them (docs/compatibility.md's strategy table names
  each). Test:
  tests/test_strategies.py.
* :mod:`.mmcv_ops` -- mmcv 2.1.0's CPU ``nms`` and ``RoIAlign`` refuse bf16
  (mmdet detectors under CPU bf16 autocast): they run in float32 there.
  Applied by mmvlp's ``AmpOptimWrapper`` when it turns CPU bf16 on.
  Unnecessary once mmcv's CPU kernels take bf16. Test: tests/test_amp.py.
* :mod:`.mmpretrain` -- ``np.in1d`` (removed in NumPy 2.4) in mmpretrain
  1.2.0's ``RetrievalRecall``. Unnecessary once mmpretrain (> 1.2.0) calls
  ``np.isin``. Test: tests/test_vl_tasks.py (retrieval through
  tools/test.py).

:func:`apply_compat_patches` also installs mmvlp's own checkpoint behaviour
into mmengine's loaders and savers (atomic saving, ``last_checkpoint``
pointers, checked loading: :mod:`mmvlp.checkpoint`), which stays after an
upgrade. mmvlp's ``AmpOptimWrapper`` (bf16 on CPU) is registered under
mmengine's name by ``mmvlp/__init__.py`` (it lives in
:mod:`mmvlp.engine.optimizers.amp`).
"""
from mmvlp.checkpoint.files import (install_atomic_checkpoint_saving,
                                    install_checkpoint_pointers,
                                    install_resumable_checkpoint_search)
from mmvlp.checkpoint.loading import install_checked_loading
from .mmpretrain import patch_mmpretrain_retrieval_in1d
from .strategies import apply_strategy_patches
from .torch_load import (install_safe_checkpoint_loading,
                         patch_history_buffer_pickling)

__all__ = ['apply_compat_patches']

_APPLIED = False


def apply_compat_patches() -> None:
    """Apply every mmvlp compatibility fix once per process."""
    global _APPLIED
    if _APPLIED:
        return
    patch_history_buffer_pickling()
    install_safe_checkpoint_loading()
    install_checked_loading()
    install_atomic_checkpoint_saving()
    install_resumable_checkpoint_search()
    install_checkpoint_pointers()  # after the safe loader: it wraps it
    apply_strategy_patches()
    patch_mmpretrain_retrieval_in1d()
    _APPLIED = True
