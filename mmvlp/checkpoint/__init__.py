"""Checkpoint files: writing them atomically and finding the one to resume
(:mod:`.files`), telling what a file holds (:mod:`.inspection`;
:mod:`.state_dicts` finds the weights in it, :mod:`.official_beit3`
recognises official BEiT-3 files), checking
that it fits a model (:mod:`.fit`), loading it with those checks
(:mod:`.loading`) and consolidating sharded DeepSpeed / FSDP checkpoints
(:mod:`.consolidation`).

Safe unpickling itself (``weights_only=True`` with mmengine's types) is a fix
for the pinned stack and lives in :mod:`mmvlp.compat.torch_load`.
"""
from .files import (atomic_torch_save, atomic_write_bytes, checkpoint_problem,
                    find_resumable_checkpoint, follow_checkpoint_pointer)
from .fit import FitReport, allow_partial_loading, compare_state_dict
from .inspection import (CheckpointError, CheckpointFileError,
                         CheckpointFitError, check_checkpoint_file,
                         summarize_checkpoint)
from .loading import (add_load_arguments, checked_loading,
                      checked_runner_loading, exit_on_load_error,
                      load_model_weights, load_state_dict_checked)
from .state_dicts import extract_state_dict

__all__ = [
    'atomic_torch_save', 'atomic_write_bytes', 'checkpoint_problem',
    'find_resumable_checkpoint', 'follow_checkpoint_pointer', 'FitReport',
    'allow_partial_loading', 'compare_state_dict', 'CheckpointError',
    'CheckpointFileError', 'CheckpointFitError', 'check_checkpoint_file',
    'extract_state_dict', 'summarize_checkpoint', 'add_load_arguments',
    'checked_loading', 'checked_runner_loading', 'exit_on_load_error',
    'load_model_weights', 'load_state_dict_checked'
]
