"""Launch-time setup shared by ``tools/train.py`` and ``tools/test.py``.

mmengine 0.10.7 assumes an accelerator once a run is distributed, and the
recipes assume a GPU for mixed precision. On a CPU-only host (see DESIGN.md,
section 4):

* ``init_dist`` calls ``torch.cuda.set_device`` for the ``pytorch``,
  ``slurm`` and ``mpi`` launchers ("Found no NVIDIA driver"). mmvlp
  initialises the process group itself, with gloo, before the runner is
  built; ``Runner.setup_env`` then sees an initialised group
  (``mmengine.dist.is_distributed()``) and skips its own ``init_dist``.
* ``Runner.wrap_model`` gives DDP ``device_ids=[LOCAL_RANK]``, which DDP
  rejects for CPU modules: mmvlp sets ``model_wrapper_cfg`` with
  ``device_ids=None``.
* several processes on few cores oversubscribe them: without a user-set
  ``OMP_NUM_THREADS`` every process gets one thread.
* ``AmpOptimWrapper`` asserts a GPU: mmvlp falls back to the fp32
  ``OptimWrapper`` with a warning, so the paper recipes can be smoke-tested.

On hosts with CUDA (or NPU, MLU, MUSA) nothing changes:
mmengine's own setup runs as usual.
"""
import logging
import os
from typing import Optional
from unittest import mock

import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.dist import init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    'LAUNCHERS', 'accelerator_available', 'limit_cpu_threads',
    'init_cpu_process_group', 'cpu_model_wrapper_cfg',
    'cpu_optim_wrapper_cfg', 'setup_launch', 'finish_launch'
]

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
# What each launcher needs in the environment before a group can start.
_LAUNCHER_ENV = {
    'pytorch': ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT'),
    'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
    'mpi': ('OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_RANK',
            'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'),
}
_LAUNCHER_HINT = {
    'pytorch': 'start it with `tools/dist_train.sh CONFIG NPROC` (torchrun)',
    'slurm': 'start it with `tools/slurm_train.sh` (srun)',
    'mpi': 'start it with mpirun and set MASTER_ADDR',
}


# Devices whose distributed setup mmengine's ``init_dist`` handles itself.
_MMENGINE_DIST_DEVICES = ('cuda', 'npu', 'mlu', 'musa')


def accelerator_available() -> bool:
    """Whether mmengine sets up this host's device itself (CUDA, NPU, MLU,
    MUSA); False on CPU-only (and MPS) hosts."""
    return get_device() in _MMENGINE_DIST_DEVICES


def limit_cpu_threads() -> int:
    """One intra-op thread per process unless ``OMP_NUM_THREADS`` is set.

    torchrun sets ``OMP_NUM_THREADS=1`` for several processes, srun does
    not; with two processes on two cores, two threads each made steps swing
    between 66 and 486 ms. A value the user set is kept.

    Returns:
        int: The number of threads torch uses now.
    """
    if 'OMP_NUM_THREADS' not in os.environ:
        os.environ['OMP_NUM_THREADS'] = '1'
        torch.set_num_threads(1)
    return torch.get_num_threads()


def _no_cuda_device(device) -> None:
    """Stands in for ``torch.cuda.set_device`` while gloo starts."""


def init_cpu_process_group(launcher: str,
                           dist_cfg: Optional[dict] = None) -> None:
    """Start the gloo process group for ``launcher`` on a CPU-only host.

    Runs mmengine's ``init_dist`` (so ``RANK``/``WORLD_SIZE``/``MASTER_*``
    are derived exactly as mmengine does for torchrun, slurm and mpi, and
    ``timeout`` is honoured) with ``backend='gloo'`` and with
    ``torch.cuda.set_device`` suppressed for the duration of the call.
    Nothing happens when a group is already initialised.

    Args:
        launcher (str): ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        dist_cfg (dict, optional): ``env_cfg.dist_cfg`` of the config; its
            ``backend`` (``nccl`` in the runtime defaults) is replaced by
            gloo, the other keys (``timeout``, ``port``) are passed on.

    Raises:
        ValueError: ``launcher`` is not a distributed launcher.
        RuntimeError: The environment lacks what the launcher sets.
    """
    if launcher not in _LAUNCHER_ENV:
        raise ValueError(f'launcher must be one of {tuple(_LAUNCHER_ENV)} '
                         f'to start a process group, got {launcher!r}.')
    if is_distributed():
        return
    missing = [key for key in _LAUNCHER_ENV[launcher]
               if key not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} needs {", ".join(missing)} in the '
            f'environment, which is not set: {_LAUNCHER_HINT[launcher]}, or '
            'use --launcher none for one process.')
    kwargs = dict(dist_cfg or {})
    backend = kwargs.pop('backend', 'gloo')
    if backend != 'gloo':
        print_log(f'No CUDA device: the process group uses gloo instead of '
                  f'{backend}.', logger='current')
    with mock.patch.object(torch.cuda, 'set_device', _no_cuda_device):
        init_dist(launcher, backend='gloo', **kwargs)


def _wrapper_class(wrapper_type):
    if isinstance(wrapper_type, type):
        return wrapper_type
    return MODEL_WRAPPERS.get(wrapper_type)


def cpu_model_wrapper_cfg(cfg: Config) -> None:
    """Make the config's DDP wrapper work for CPU modules (in place).

    Sets ``model_wrapper_cfg`` to mmengine's default wrapper
    (``MMDistributedDataParallel``, ``broadcast_buffers=False``,
    ``find_unused_parameters`` from the config) with ``device_ids=None``
    when the config has none, and adds ``device_ids=None`` to a DDP-type
    wrapper config that does not name devices.

    Args:
        cfg (Config): The run's config.

    Raises:
        ValueError: The wrapper config names device ids (CUDA devices).
    """
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        return
    wrapper_class = _wrapper_class(
        wrapper.get('type', 'MMDistributedDataParallel'))
    if wrapper_class is None or not issubclass(wrapper_class,
                                               DistributedDataParallel):
        return
    if wrapper.get('device_ids') is not None:
        raise ValueError(
            f'model_wrapper_cfg.device_ids={wrapper["device_ids"]} names '
            'CUDA devices, but this host has none: drop device_ids (mmvlp '
            'sets None for CPU DDP) or run on a GPU host.')
    wrapper['device_ids'] = None


def cpu_optim_wrapper_cfg(cfg: Config) -> None:
    """Replace ``AmpOptimWrapper`` by the fp32 ``OptimWrapper`` (in place).

    mmengine's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU. On a CPU-only host
    mmvlp trains in fp32 instead (dropping ``dtype`` and ``loss_scale``)
    and says so; numbers from such a run are not the recipe's mixed
    precision ones.

    Args:
        cfg (Config): The run's config.
    """
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict):
        return
    # A single wrapper, or several (multi-optimizer configs) by name.
    candidates = [wrapper] + [value for value in wrapper.values()
                              if isinstance(value, dict)]
    for candidate in candidates:
        if candidate.get('type') == 'AmpOptimWrapper':
            print_log(
                'AmpOptimWrapper needs a GPU; this host has none, so the '
                'run uses OptimWrapper in fp32 (dtype/loss_scale ignored).',
                logger='current', level=logging.WARNING)
            candidate['type'] = 'OptimWrapper'
            for key in ('dtype', 'loss_scale', 'use_fsdp'):
                candidate.pop(key, None)


def setup_launch(cfg: Config) -> None:
    """Prepare a config and the process for ``cfg.launcher`` (in place).

    Call it after the command-line options are merged and before
    ``Runner.from_cfg``. With an accelerator it does nothing. On a CPU-only
    host it applies :func:`cpu_optim_wrapper_cfg`, and for a distributed
    launcher also :func:`limit_cpu_threads`, :func:`init_cpu_process_group`
    and :func:`cpu_model_wrapper_cfg`.

    Args:
        cfg (Config): The run's config; ``cfg.launcher`` is one of
            :data:`LAUNCHERS` (``'none'`` when absent).

    Raises:
        ValueError: Unknown launcher.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got '
                         f'{launcher!r}.')
    if accelerator_available():
        return
    cpu_optim_wrapper_cfg(cfg)
    if launcher == 'none':
        return
    limit_cpu_threads()
    env_cfg = cfg.get('env_cfg') or {}
    # mmengine's init_dist picks 'spawn' when no start method is set, and
    # its runner then forces the config's one with a warning: set it first.
    method = (env_cfg.get('mp_cfg') or {}).get('mp_start_method')
    if method is not None and mp.get_start_method(allow_none=True) is None:
        mp.set_start_method(method)
    init_cpu_process_group(launcher, env_cfg.get('dist_cfg'))
    cpu_model_wrapper_cfg(cfg)


def finish_launch() -> None:
    """End a distributed run cleanly: wait for every rank, then destroy the
    process group. Nothing happens in a single-process run.

    Without it the ranks leave the interpreter at different moments; gloo's
    background thread of a rank still running then sees its peers' sockets
    close and aborts the process (``SIGABRT``), which fails the whole job
    although every rank has finished its work.
    """
    if not torch.distributed.is_available() or \
            not torch.distributed.is_initialized():
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
