"""Utilities: compatibility fixes for the pinned OpenMMLab stack and the
launch-time setup of the tools (CPU-only distributed runs)."""
from .batch_scaling import report_batch, set_accumulation
from .checkpoint_files import (atomic_write_bytes, checkpoint_problem,
                               find_resumable_checkpoint)
from .checkpoint_safety import (UnsafeCheckpointError, checkpoint_safe_globals,
                                install_safe_checkpoint_loading,
                                patch_history_buffer_pickling, safe_torch_load)
from .compat import apply_compat_patches
from .config_check import ConfigError, check_config
from .launch import (build_runner, drop_disabled_default_hooks,
                     exit_after_launch, finish_launch, setup_launch)

__all__ = [
    'UnsafeCheckpointError', 'checkpoint_safe_globals', 'safe_torch_load',
    'install_safe_checkpoint_loading', 'patch_history_buffer_pickling',
    'apply_compat_patches', 'atomic_write_bytes', 'checkpoint_problem',
    'find_resumable_checkpoint', 'ConfigError', 'check_config',
    'setup_launch', 'build_runner', 'drop_disabled_default_hooks',
    'exit_after_launch', 'finish_launch', 'set_accumulation',
    'report_batch'
]
