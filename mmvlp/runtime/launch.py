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
* ``AmpOptimWrapper`` asserts a GPU: mmvlp's own ``AmpOptimWrapper``
  (registered under that name at ``import mmvlp``) trains with bf16
  autocast on CPUs with bf16 units and in fp32 elsewhere
  (``mmvlp/engine/optimizers/amp.py``).
* ``FSDPStrategy`` gives FSDP ``device_id=LOCAL_RANK`` (a CUDA device) and
  ``DDPStrategy`` gives DDP ``device_ids=[LOCAL_RANK]``: mmvlp sets
  ``device_id='cpu'`` / ``device_ids=None`` in the strategy's
  ``model_wrapper``.

On hosts with CUDA (or NPU, MLU, MUSA) mmengine's own setup runs as usual.

Configs with a ``strategy`` (``FlexibleRunner``) get, on every host
(:func:`setup_strategy`):

* ``DeepSpeedStrategy``: the recipe's ``optim_wrapper`` becomes a
  ``DeepSpeedOptimWrapper`` (its ``clip_grad`` moves to the strategy's
  ``gradient_clipping``, ``accumulative_counts`` to
  ``gradient_accumulation_steps``; precision comes from the strategy's
  ``bf16``/``fp16``), ``inputs_to_half=['inputs']`` when bf16/fp16 is on,
  ``TORCH_EXTENSIONS_DIR`` defaults to a cache of mmvlp's (deepspeed
  compiles a communication op there once), and a single process
  (``--launcher none``) starts a one-process group itself (deepspeed would
  otherwise look for MPI and ask for ``mpi4py``).
"""
import gc
import logging
import os
import os.path as osp
import socket
import sys
from typing import List, Optional
from unittest import mock

import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.dist import init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

from mmvlp.utils.accelerators import (accelerator_available,
                                      deepspeed_available)

__all__ = [
    'LAUNCHERS', 'accelerator_available', 'limit_cpu_threads',
    'init_cpu_process_group', 'cpu_model_wrapper_cfg',
    'cpu_strategy_cfg', 'strategy_type',
    'deepspeed_optim_wrapper_cfg', 'setup_strategy', 'setup_launch',
    'build_runner', 'finish_launch'
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


def strategy_type(cfg: Config) -> Optional[str]:
    """The class name of the config's ``strategy`` (``'DeepSpeedStrategy'``,
    ``'FSDPStrategy'``, ...), or None for ``Runner`` configs.

    Args:
        cfg (Config): The run's config.
    """
    strategy = cfg.get('strategy')
    if strategy is None:
        return None
    kind = strategy.get('type') if isinstance(strategy, dict) else strategy
    if isinstance(kind, type):
        return kind.__name__
    kind = type(kind).__name__ if not isinstance(kind, str) else kind
    return kind.split('.')[-1]


def cpu_strategy_cfg(cfg: Config) -> None:
    """Keep a ``FlexibleRunner`` strategy's wrapper on the CPU (in place).

    ``FSDPStrategy`` passes ``device_id=LOCAL_RANK`` to FSDP and
    ``DDPStrategy`` ``device_ids=[LOCAL_RANK]`` to DDP, both CUDA devices:
    mmvlp sets ``model_wrapper.device_id='cpu'`` / ``device_ids=None``. An
    FSDP ``mixed_precision`` policy is dropped (fp32, as AmpOptimWrapper
    falls back to fp32 on CPU).

    Args:
        cfg (Config): The run's config.

    Raises:
        ValueError: The wrapper names CUDA devices.
    """
    kind = strategy_type(cfg)
    if kind not in ('FSDPStrategy', 'DDPStrategy'):
        return
    strategy = cfg.strategy
    wrapper = strategy.get('model_wrapper') or {}
    if kind == 'FSDPStrategy':
        wrapper.setdefault('type', 'MMFullyShardedDataParallel')
        if wrapper.pop('mixed_precision', None) is not None:
            print_log(
                'FSDP mixed precision (bf16 gathers and compute) is for GPUs; '
                'this host has none, so the run keeps fp32 weights.',
                logger='current', level=logging.WARNING)
        device = wrapper.get('device_id')
        if device not in (None, 'cpu'):
            raise ValueError(
                f'strategy.model_wrapper.device_id={device!r} names a CUDA '
                'device, but this host has none: drop it (mmvlp sets "cpu").')
        wrapper['device_id'] = 'cpu'
    else:
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper.setdefault('broadcast_buffers', False)
        if wrapper.get('device_ids') is not None:
            raise ValueError(
                f'strategy.model_wrapper.device_ids={wrapper["device_ids"]} '
                'names CUDA devices, but this host has none: drop them.')
        wrapper['device_ids'] = None
    strategy['model_wrapper'] = wrapper


def deepspeed_optim_wrapper_cfg(cfg: Config) -> None:
    """Turn the recipe's optimizer wrapper into DeepSpeed's (in place).

    ``DeepSpeedOptimWrapper`` takes the optimizer only; what the recipes put
    in their ``OptimWrapper``/``AmpOptimWrapper`` moves to the strategy,
    which hands it to the DeepSpeed engine:

    * ``clip_grad=dict(max_norm=M)`` -> ``gradient_clipping=M``, and no
      ``clip_grad`` -> ``gradient_clipping=0`` (deepspeed 0.19 would clip
      at norm 1.0 by default);
    * ``accumulative_counts=N`` -> ``gradient_accumulation_steps=N``;
    * ``dtype``/``loss_scale`` are dropped: precision is the strategy's
      ``bf16=dict(enabled=True)`` or ``fp16=...``;
    * with bf16/fp16 enabled, ``inputs_to_half`` defaults to ``['inputs']``
      (the floating-point tensors of the model inputs; ids and masks keep
      their dtype).

    ``optimizer``, ``paramwise_cfg`` and ``constructor`` are kept.

    Args:
        cfg (Config): The run's config with a ``DeepSpeedStrategy``.

    Raises:
        ValueError: A setting is given twice with different values, or
            cannot be expressed (value clipping, several optimizers).
    """
    strategy = cfg.strategy
    for key in ('bf16', 'fp16'):
        if (strategy.get(key) or {}).get('enabled', False):
            strategy.setdefault('inputs_to_half', ['inputs'])
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict):
        return
    kind = wrapper.get('type', 'OptimWrapper')
    if kind == 'DeepSpeedOptimWrapper':
        return
    if kind not in ('OptimWrapper', 'AmpOptimWrapper') or \
            'optimizer' not in wrapper:
        raise ValueError(
            f'DeepSpeedStrategy trains one optimizer; optim_wrapper of type '
            f'{kind!r} without a single `optimizer` cannot be moved to '
            'DeepSpeed. Use the Runner (DDP) or FSDPStrategy for it.')
    moved = []

    def move(value, key: str, what: str) -> None:
        current = strategy.get(key)
        if current is not None and current != value:
            raise ValueError(
                f'optim_wrapper.{what} ({value}) and strategy.{key} '
                f'({current}) disagree; set one of them.')
        strategy[key] = value
        moved.append(f'{what} -> strategy.{key}={value}')

    clip = wrapper.pop('clip_grad', None)
    if clip:
        if clip.get('type', 'norm') != 'norm':
            raise ValueError('DeepSpeed clips by the gradient norm only; '
                             f'optim_wrapper.clip_grad={dict(clip)}.')
        move(clip['max_norm'], 'gradient_clipping', 'clip_grad.max_norm')
    elif strategy.get('gradient_clipping') is None:
        # deepspeed 0.19 clips at norm 1.0 unless told otherwise; a recipe
        # without clip_grad does not clip under DDP or FSDP either.
        strategy['gradient_clipping'] = 0.
        moved.append('no clip_grad -> strategy.gradient_clipping=0.0 '
                     "(deepspeed's default would clip at 1.0)")
    counts = wrapper.pop('accumulative_counts', 1)
    if counts != 1 or strategy.get('gradient_accumulation_steps'):
        move(counts, 'gradient_accumulation_steps', 'accumulative_counts')
    dropped = [key for key in ('dtype', 'loss_scale', 'use_fsdp')
               if wrapper.pop(key, None) is not None]
    wrapper['type'] = 'DeepSpeedOptimWrapper'
    precision = next((key for key in ('bf16', 'fp16')
                      if (strategy.get(key) or {}).get('enabled', False)),
                     'fp32')
    print_log(
        f'DeepSpeedStrategy: optim_wrapper {kind} -> DeepSpeedOptimWrapper'
        f'{"; " + "; ".join(moved) if moved else ""}; precision '
        f'{precision} from the strategy'
        f'{" (ignored " + ", ".join(dropped) + ")" if dropped else ""}.',
        logger='current')


def _default_extensions_dir() -> str:
    cache = os.environ.get('MMVLP_CACHE_DIR') or osp.join(
        osp.expanduser('~'), '.cache', 'mmvlp')
    return osp.join(cache, 'torch_extensions')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _single_process_group_env(cfg: Config) -> None:
    """Make a one-process run look like ``torchrun --nproc_per_node 1``."""
    defaults = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                    LOCAL_WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                    MASTER_PORT=str(_free_port()))
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    cfg.launcher = 'pytorch'
    print_log('DeepSpeedStrategy in one process: starting a one-process '
              'group (as torchrun would) instead of deepspeed\'s MPI '
              'discovery.', logger='current')


def setup_strategy(cfg: Config) -> None:
    """What a ``FlexibleRunner`` strategy needs on every host (in place).

    For ``DeepSpeedStrategy``: :func:`deepspeed_optim_wrapper_cfg`, a
    default ``TORCH_EXTENSIONS_DIR`` (``$MMVLP_CACHE_DIR/torch_extensions``,
    else ``~/.cache/mmvlp/torch_extensions``; deepspeed JIT-compiles its
    CPU communication op there once) and, for ``launcher='none'``, a
    one-process ``pytorch`` launch. Other configs are left alone.

    Args:
        cfg (Config): The run's config.
    """
    if strategy_type(cfg) != 'DeepSpeedStrategy':
        return
    if not deepspeed_available():
        raise ImportError(
            'This config uses DeepSpeedStrategy but deepspeed is not '
            'installed: pip install -r requirements/optional.txt (or '
            '"deepspeed>=0.19").')
    os.environ.setdefault('TORCH_EXTENSIONS_DIR', _default_extensions_dir())
    deepspeed_optim_wrapper_cfg(cfg)
    if cfg.get('launcher', 'none') == 'none':
        _single_process_group_env(cfg)


def setup_launch(cfg: Config) -> None:
    """Prepare a config and the process for ``cfg.launcher`` (in place).

    Call it after the command-line options are merged and before
    ``Runner.from_cfg`` / ``FlexibleRunner.from_cfg``. It applies
    :func:`setup_strategy` (configs with a ``strategy``); beyond that, with
    an accelerator it does nothing. On a CPU-only host with a distributed
    launcher it applies :func:`limit_cpu_threads`,
    :func:`init_cpu_process_group`,
    :func:`cpu_model_wrapper_cfg` and :func:`cpu_strategy_cfg`.

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
    setup_strategy(cfg)
    launcher = cfg.get('launcher', 'none')
    if accelerator_available():
        return
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
    if strategy_type(cfg) is None:
        cpu_model_wrapper_cfg(cfg)
    else:
        cpu_strategy_cfg(cfg)


#: The default hooks mmengine's Runner knows by name (it removes those set
#: to None itself).
MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger',
                          'param_scheduler', 'checkpoint')


def drop_disabled_default_hooks(cfg: Config) -> List[str]:
    """Remove ``default_hooks`` entries set to None that mmengine does not
    know by name.

    ``--cfg-options default_hooks.<name>=None`` is how OpenMMLab users turn
    a default hook off; mmengine's Runner honours it only for its own six
    hooks and fails on an assertion for any other (e.g. mmvlp's
    ``nonfinite``). Dropping the entry turns that hook off the same way.

    Args:
        cfg (Config): The run's config, changed in place.

    Returns:
        list[str]: The names dropped.
    """
    hooks = cfg.get('default_hooks')
    if not isinstance(hooks, dict):
        return []
    dropped = [name for name, hook in hooks.items()
               if hook is None and name not in MMENGINE_DEFAULT_HOOKS]
    for name in dropped:
        hooks.pop(name)
    return dropped


def build_runner(cfg: Config):
    """The runner a config asks for: ``cfg.runner_type`` when set, else
    mmengine's ``FlexibleRunner`` for configs with a ``strategy``
    (DeepSpeed, FSDP, ...) and ``Runner`` (DDP) otherwise. Default hooks set
    to None are turned off (:func:`drop_disabled_default_hooks`).

    Args:
        cfg (Config): The run's config (after :func:`setup_launch`).

    Returns:
        Runner | FlexibleRunner: The built runner.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import FlexibleRunner, Runner
    drop_disabled_default_hooks(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    if cfg.get('strategy') is not None:
        return FlexibleRunner.from_cfg(cfg)
    return Runner.from_cfg(cfg)


def finish_launch() -> bool:
    """End a distributed run cleanly: wait for every rank, then destroy the
    process group. Nothing happens in a single-process run.

    Without it the ranks leave the interpreter at different moments; gloo's
    background thread of a rank still running then sees its peers' sockets
    close and aborts the process (``SIGABRT``), which fails the whole job
    although every rank has finished its work.

    Returns:
        bool: Whether a process group was torn down (the run was
        distributed); the tools then leave with :func:`exit_after_launch`.
    """
    if not torch.distributed.is_available() or \
            not torch.distributed.is_initialized():
        return False
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return True


def exit_after_launch(code: int = 0) -> None:
    """Leave a finished distributed rank without interpreter finalisation.

    Even after :func:`finish_launch`, a rank of a CPU (gloo) run now and
    then aborts while the interpreter finalises ("terminate called without
    an active exception", ``SIGABRT``): a C++ thread object of torch's
    distributed stack is destroyed while still joinable. torchrun then
    fails the job although every rank has finished and written its
    results (``test_launch.py::test_dist_test_sh_two_cpu_processes`` in two
    fresh-clone CI runs; 18 local repetitions did not show it). Once the
    work is done and written, there is nothing finalisation has to do that
    this function does not: it collects the garbage (a runner's data
    loaders shut their workers down), flushes the logging handlers and the
    standard streams and ends the process with ``os._exit``. Call it last,
    after ``main()`` has returned (as the tools do).

    Args:
        code (int): The exit status.
    """
    gc.collect()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or detached stream
            pass
    os._exit(code)
