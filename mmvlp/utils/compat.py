"""Fixes for running OpenMMLab 2.x on modern PyTorch, applied at import.

Each fix patches behaviour in memory (never another package's files), is
idempotent and is listed in docs/compatibility.md with the test
that shows it.
"""
from .checkpoint_files import (install_atomic_checkpoint_saving,
                               install_checkpoint_pointers,
                               install_resumable_checkpoint_search)
from .checkpoint_loading import install_checked_loading
from .checkpoint_safety import (install_safe_checkpoint_loading,
                                patch_history_buffer_pickling)
from .numpy_compat import patch_mmpretrain_retrieval_in1d
from .strategy_compat import apply_strategy_patches

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
    # mmengine's AmpOptimWrapper asserts a GPU and scales bf16 losses.
    from mmvlp.engine.optimizers.amp import register_amp_optim_wrapper
    register_amp_optim_wrapper()
    _APPLIED = True
