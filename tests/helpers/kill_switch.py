"""A hook that kills its own training process, for the interruption tests
(imported by tools/train.py through ``custom_imports``).

``MMVLP_TEST_KILL`` says when:

* ``iter:K``: SIGKILL right after iteration K (after that iteration's
  checkpoint, if it has one): no cleanup, no flushing, as ``kill -9``;
* ``save:S``: while the checkpoint of iteration S is being written. The
  hook lowers the file-size limit (``RLIMIT_FSIZE``) below the size of the
  checkpoint and restores the default action of ``SIGXFSZ`` (Python ignores
  it), so the kernel kills the process in the middle of writing the file,
  leaving the bytes written so far.

Unset: the hook does nothing.
"""
import os
import resource
import signal

import torch
from mmengine.hooks import Hook

from mmvlp.registry import HOOKS


def _nbytes(tree) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(_nbytes(value) for value in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_nbytes(value) for value in tree)
    return 0


@HOOKS.register_module(force=True)
class KillSwitchHook(Hook):
    """Kill this process where ``MMVLP_TEST_KILL`` says (module docstring).
    """

    priority = 'LOWEST'  # after CheckpointHook

    def __init__(self) -> None:
        spec = os.environ.get('MMVLP_TEST_KILL', '')
        self.when, _, step = spec.partition(':')
        self.step = int(step) if step else None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.when == 'iter' and runner.iter + 1 == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.when != 'save' or checkpoint['meta'].get('iter') != \
                self.step:
            return
        limit = _nbytes(checkpoint) // 2
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        with open(os.path.join(runner.work_dir, 'kill_limit'), 'w') as f:
            f.write(str(limit))
