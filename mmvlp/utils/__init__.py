"""Small helpers every layer may use: device-side checks (:mod:`.checks`),
distributed gathers (:mod:`.dist`) and what the host offers
(:mod:`.accelerators`).

Deprecated re-exports: ``from mmvlp.utils import X`` still works for the names
that used to live here (launch setup, config check, checkpoint files and
loading, compatibility fixes); they moved to :mod:`mmvlp.runtime`,
:mod:`mmvlp.checkpoint` and :mod:`mmvlp.compat` (see docs/architecture.md).
They are looked up when first used, so importing ``mmvlp.utils`` does not
import the layers above it.
"""
import importlib

#: Old name -> the module that holds it now.
_MOVED = {
    **dict.fromkeys(('report_batch', 'set_accumulation'),
                    'mmvlp.runtime.batch_scaling'),
    **dict.fromkeys(('ConfigError', 'check_config'),
                    'mmvlp.runtime.config_check'),
    **dict.fromkeys(('build_runner', 'drop_disabled_default_hooks',
                     'exit_after_launch', 'finish_launch', 'setup_launch'),
                    'mmvlp.runtime.launch'),
    **dict.fromkeys(('atomic_write_bytes', 'checkpoint_problem',
                     'find_resumable_checkpoint'), 'mmvlp.checkpoint.files'),
    **dict.fromkeys(('FitReport', 'allow_partial_loading',
                     'compare_state_dict'), 'mmvlp.checkpoint.fit'),
    **dict.fromkeys(('CheckpointError', 'CheckpointFileError',
                     'CheckpointFitError', 'check_checkpoint_file',
                     'summarize_checkpoint'), 'mmvlp.checkpoint.inspection'),
    **dict.fromkeys(('add_load_arguments', 'checked_loading',
                     'checked_runner_loading', 'exit_on_load_error',
                     'load_model_weights', 'load_state_dict_checked'),
                    'mmvlp.checkpoint.loading'),
    **dict.fromkeys(('UnsafeCheckpointError', 'checkpoint_safe_globals',
                     'install_safe_checkpoint_loading',
                     'patch_history_buffer_pickling', 'safe_torch_load'),
                    'mmvlp.compat.torch_load'),
    'apply_compat_patches': 'mmvlp.compat',
}
# ``from mmvlp.utils import *`` gives the old names, as before the move.
__all__ = sorted(_MOVED)


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + list(_MOVED))
