"""Utilities: compatibility fixes for the pinned OpenMMLab stack."""
from .checkpoint_safety import (UnsafeCheckpointError, checkpoint_safe_globals,
                                install_safe_checkpoint_loading,
                                patch_history_buffer_pickling, safe_torch_load)
from .compat import apply_compat_patches

__all__ = [
    'UnsafeCheckpointError', 'checkpoint_safe_globals', 'safe_torch_load',
    'install_safe_checkpoint_loading', 'patch_history_buffer_pickling',
    'apply_compat_patches'
]
