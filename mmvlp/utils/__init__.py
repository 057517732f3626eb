"""Utilities: compatibility fixes for the pinned OpenMMLab stack and the
launch-time setup of the tools (CPU-only distributed runs)."""
from .batch_scaling import report_batch, set_accumulation
from .checkpoint_files import (atomic_write_bytes, checkpoint_problem,
                               find_resumable_checkpoint)
from .checkpoint_fit import (FitReport, allow_partial_loading,
                             compare_state_dict)
from .checkpoint_inspect import (CheckpointError, CheckpointFileError,
                                 CheckpointFitError, check_checkpoint_file,
                                 summarize_checkpoint)
from .checkpoint_loading import (add_load_arguments, checked_loading,
                                 checked_runner_loading, exit_on_load_error,
                                 load_model_weights, load_state_dict_checked)
from .checkpoint_safety import (UnsafeCheckpointError, checkpoint_safe_globals,
                                install_safe_checkpoint_loading,
                                patch_history_buffer_pickling, safe_torch_load)
from .compat import apply_compat_patches
from .config_check import ConfigError, check_config
from .launch import (build_runner, drop_disabled_default_hooks,
                     exit_after_launch, finish_launch, setup_launch)

__all__ = [
    'CheckpointError', 'CheckpointFileError', 'CheckpointFitError',
    'FitReport', 'check_checkpoint_file', 'summarize_checkpoint',
    'compare_state_dict', 'load_state_dict_checked', 'load_model_weights',
    'checked_loading', 'checked_runner_loading', 'allow_partial_loading',
    'add_load_arguments', 'exit_on_load_error', 'UnsafeCheckpointError',
    'checkpoint_safe_globals', 'safe_torch_load',
    'install_safe_checkpoint_loading', 'patch_history_buffer_pickling',
    'apply_compat_patches', 'atomic_write_bytes', 'checkpoint_problem',
    'find_resumable_checkpoint', 'ConfigError', 'check_config',
    'setup_launch', 'build_runner', 'drop_disabled_default_hooks',
    'exit_after_launch', 'finish_launch', 'set_accumulation',
    'report_batch'
]
