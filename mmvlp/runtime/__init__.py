"""What the tools do between reading a config and running it: check the
config (:mod:`.config_check`), set up the launch -- process group, strategy,
model wrapper on CPU-only hosts -- and build the runner (:mod:`.launch`),
and scale batches / gradient accumulation (:mod:`.batch_scaling`).

``tools/train.py`` and ``tools/test.py`` call these in that order; the loops
and hooks the runner then runs are in :mod:`mmvlp.engine`.
"""
from .batch_scaling import report_batch, set_accumulation
from .config_check import ConfigError, check_config
from .launch import (build_runner, drop_disabled_default_hooks,
                     exit_after_launch, finish_launch, setup_launch)

__all__ = [
    'report_batch', 'set_accumulation', 'ConfigError', 'check_config',
    'build_runner', 'drop_disabled_default_hooks', 'exit_after_launch',
    'finish_launch', 'setup_launch'
]
