"""Gradient accumulation and the effective batch of a run.

BEiT-3 trains with 2048 images + 2048 texts + 2048 pairs per optimizer step
(6144 samples) on 64 GPUs. With fewer GPUs the same batch comes from
accumulating gradients over several iterations
(``optim_wrapper.accumulative_counts``; DeepSpeed's
``gradient_accumulation_steps``). mmengine counts *iterations*
(micro-batches): its schedulers, ``max_iters`` and checkpoint intervals move
once per iteration, so accumulating over N iterations without changing them
would train N times fewer optimizer steps and warm up N times faster.
:func:`set_accumulation` (``tools/train.py --accumulate N``) multiplies those
iteration counts by N so that the schedule stays in optimizer steps, and
:func:`report_batch` prints, at the start of training, the effective batch
and what it means for the learning rate (and applies ``auto_scale_lr`` with
the accumulation counted, which mmengine's own scaling does not do).
"""
import copy
import os
from typing import Dict, Optional

from mmengine.config import Config
from mmengine.logging import print_log

__all__ = [
    'PAPER_BATCH', 'world_size_from_env', 'accumulation_of',
    'per_process_batch', 'set_accumulation', 'report_batch'
]

#: Samples per optimizer step in the BEiT-3 paper.
PAPER_BATCH = dict(image=2048, text=2048, pair=2048)

_ITER_LOOPS = ('IterBasedTrainLoop', 'MultiSourceTrainLoop')


def world_size_from_env() -> int:
    """The number of processes of this launch (torchrun, Slurm, MPI), or 1.

    Works before the process group exists (mmengine starts it later on GPU
    hosts).
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    for key in ('WORLD_SIZE', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
        if os.environ.get(key):
            return int(os.environ[key])
    return 1


def accumulation_of(cfg: Config) -> int:
    """Iterations per optimizer step: the optimizer wrapper's
    ``accumulative_counts`` or the DeepSpeed strategy's
    ``gradient_accumulation_steps``."""
    strategy = cfg.get('strategy') or {}
    steps = strategy.get('gradient_accumulation_steps') if isinstance(
        strategy, dict) else None
    wrapper = cfg.get('optim_wrapper') or {}
    counts = wrapper.get('accumulative_counts') if isinstance(
        wrapper, dict) else None
    return int(steps or counts or 1)


def per_process_batch(cfg: Config) -> Dict[str, int]:
    """Samples per process and iteration, by source (``'all'`` for a
    single-source dataloader)."""
    loader = cfg.get('train_dataloader') or {}
    if 'batch_size' in loader or 'dataset' in loader:
        return dict(all=int(loader.get('batch_size', 1)))
    return {name: int(part.get('batch_size', 1))
            for name, part in loader.items() if isinstance(part, dict)}


def _is_iteration_based(cfg: Config) -> bool:
    train_cfg = cfg.get('train_cfg') or {}
    kind = train_cfg.get('type')
    if kind is None:
        return not train_cfg.get('by_epoch', True)
    return kind.split('.')[-1] in _ITER_LOOPS


def set_accumulation(cfg: Config, counts: int) -> None:
    """Accumulate gradients over ``counts`` iterations, keeping the schedule
    in optimizer steps (in place).

    Sets ``optim_wrapper.accumulative_counts`` (a DeepSpeed strategy gets it
    as ``gradient_accumulation_steps`` from
    :func:`~mmvlp.runtime.launch.setup_launch`). For iteration-based training
    it multiplies by ``counts``: ``train_cfg.max_iters`` and ``val_interval``,
    ``begin``/``end`` of iteration-based schedulers, and the iteration
    intervals of the checkpoint and logger hooks. Epoch-based training needs
    no change (an epoch holds the same samples; with fewer GPUs it simply
    has more iterations).

    Args:
        cfg (Config): The run's config.
        counts (int): Iterations per optimizer step (>= 1).

    Raises:
        ValueError: ``counts < 1`` or the config already accumulates.
    """
    if counts < 1:
        raise ValueError(f'--accumulate must be >= 1, got {counts}.')
    if accumulation_of(cfg) != 1:
        raise ValueError(
            f'The config already accumulates {accumulation_of(cfg)} '
            'iterations (optim_wrapper.accumulative_counts or '
            'strategy.gradient_accumulation_steps); set one of them, not '
            'both with --accumulate.')
    if counts == 1:
        return
    cfg.optim_wrapper.accumulative_counts = counts
    if not _is_iteration_based(cfg):
        return
    train_cfg = cfg.train_cfg
    for key in ('max_iters', 'val_interval', 'val_begin'):
        if train_cfg.get(key) is not None:
            train_cfg[key] = train_cfg[key] * counts
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for scheduler in schedulers:
        if scheduler.get('by_epoch', True):
            continue
        for key in ('begin', 'end'):
            if scheduler.get(key) is not None:
                scheduler[key] = scheduler[key] * counts
    hooks = cfg.get('default_hooks') or {}
    for name in ('checkpoint', 'logger'):
        hook = hooks.get(name)
        if hook and hook.get('interval') and not hook.get('by_epoch', False):
            hook['interval'] = hook['interval'] * counts


def _format_batch(batch: Dict[str, int]) -> str:
    return ' + '.join(f'{name} {size}' if name != 'all' else str(size)
                      for name, size in batch.items())


def _optimizer_lr(cfg: Config) -> Optional[float]:
    wrapper = cfg.get('optim_wrapper') or {}
    optimizer = wrapper.get('optimizer') if isinstance(wrapper,
                                                       dict) else None
    return optimizer.get('lr') if isinstance(optimizer, dict) else None


def report_batch(cfg: Config, world_size: Optional[int] = None) -> dict:
    """Log the effective batch and the learning rate it trains with, and
    apply ``auto_scale_lr`` counting accumulation (in place).

    With ``auto_scale_lr=dict(enable=True, base_batch_size=B)`` the
    optimizer's lr is multiplied by ``effective / B``, where ``effective``
    counts processes, per-process samples of every source and the
    accumulation; ``enable`` is then turned off so that mmengine (which
    ignores accumulation and multi-source batches) does not scale again.

    Args:
        cfg (Config): The run's config.
        world_size (int, optional): Processes of the run (default: from the
            environment).

    Returns:
        dict: ``world_size``, ``per_process`` (per source), ``accumulation``,
        ``effective`` (per source), ``total``, ``lr`` (after scaling),
        ``scaled_by`` (or None).
    """
    world_size = world_size or world_size_from_env()
    per_process = per_process_batch(cfg)
    counts = accumulation_of(cfg)
    effective = {name: size * world_size * counts
                 for name, size in per_process.items()}
    total = sum(effective.values())
    lr = _optimizer_lr(cfg)
    auto = cfg.get('auto_scale_lr') or {}
    scaled_by = None
    if auto.get('enable', False) and lr is not None:
        if 'base_batch_size' not in auto:
            raise ValueError('auto_scale_lr needs base_batch_size.')
        scaled_by = total / auto['base_batch_size']
        lr = lr * scaled_by
        cfg.optim_wrapper.optimizer.lr = lr
        cfg.auto_scale_lr = dict(copy.deepcopy(dict(auto)), enable=False)
    processes = f'{world_size} process{"es" if world_size > 1 else ""}'
    if set(per_process) == {'all'}:
        line = (f'{processes} x {per_process["all"]} x accumulation '
                f'{counts} = {total}')
    else:
        line = (f'{processes} x ({_format_batch(per_process)}) x '
                f'accumulation {counts} = {_format_batch(effective)} = '
                f'{total}')
    lines = [f'Effective batch: {line} samples per optimizer step.']
    paper = sum(PAPER_BATCH.values())
    if set(effective) == set(PAPER_BATCH):
        lines.append(f'The BEiT-3 paper trains with {paper} '
                     f'({_format_batch(PAPER_BATCH)}): this run has '
                     f'{total / paper:.4g} x that.')
    if lr is not None:
        if scaled_by is not None:
            lines.append(
                f'Learning rate: {lr:.4g} (auto_scale_lr: the config\'s lr x '
                f'{total} / {auto["base_batch_size"]} = x {scaled_by:.4g}).')
        else:
            base = auto.get('base_batch_size')
            hint = ''
            if base and base != total:
                hint = (f' The config\'s lr is meant for a batch of {base}; '
                        f'linear scaling would give {lr * total / base:.4g} '
                        '(auto_scale_lr=dict(enable=True, base_batch_size='
                        f'{base}) applies it).')
            lines.append(f'Learning rate: {lr:.4g} as configured (not '
                         f'scaled).{hint}')
    if counts > 1:
        lines.append(
            f'Schedules count iterations: {counts} iterations make one '
            'optimizer step (tools/train.py --accumulate multiplies '
            'max_iters, iteration-based scheduler bounds and hook '
            'intervals accordingly).')
    if int(os.environ.get('RANK', '0')) == 0:
        print_log('\n'.join(lines), logger='current')
    return dict(world_size=world_size, per_process=per_process,
                accumulation=counts, effective=effective, total=total, lr=lr,
                scaled_by=scaled_by)
