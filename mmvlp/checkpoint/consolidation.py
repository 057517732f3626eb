"""Turn the checkpoint of a DeepSpeed, FSDP or DDP run into one mmengine
``.pth`` with fp32 weights under ``state_dict`` (what
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
and ``load_checkpoint`` read).

* DeepSpeed (``DeepSpeedStrategy``, ZeRO-1/2/3): a directory
  ``ITER.pth/`` of per-rank model and optimizer states. The fp32 master
  weights are gathered from the optimizer partitions, offline, in one
  process (deepspeed's ``zero_to_fp32`` logic), with every file loaded by
  ``weights_only=True`` (:func:`~mmvlp.compat.strategies.
  safe_deepspeed_load`); frozen parameters (the visual tokenizer) and
  buffers come from the model states.
* FSDP with ``state_dict_cfg='full'`` and the ``Runner`` (DDP): already
  one file; its ``state_dict`` is kept and the optimizer, schedulers and
  message hub are dropped.
* FSDP with ``state_dict_cfg='local'``: a directory of ``rank{i}.pth``
  shards. They can only be read by the same number of processes, in a
  process group, with the model wrapped as in training: run the tool with
  the training config under ``tools/dist_run.sh`` (see
  :func:`consolidate_fsdp_sharded`).
"""
import contextlib
import os
import os.path as osp
import time
from typing import Dict, Optional, Tuple
from unittest import mock

import torch
from mmengine.logging import print_log

__all__ = [
    'checkpoint_kind', 'consolidate_deepspeed', 'consolidate_file',
    'consolidate_fsdp_sharded', 'save_consolidated'
]

_DEEPSPEED_SUFFIX = 'model_states.pt'


def checkpoint_kind(path: str) -> str:
    """``'deepspeed'`` (a directory of ``*model_states.pt``),
    ``'fsdp_sharded'`` (a directory of ``rank{i}.pth``) or ``'file'``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A directory of neither kind.
    """
    if osp.isfile(path):
        return 'file'
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path} does not exist.')
    names = os.listdir(path)
    if any(name.endswith(_DEEPSPEED_SUFFIX) for name in names):
        return 'deepspeed'
    if 'rank0.pth' in names:
        return 'fsdp_sharded'
    raise ValueError(
        f'{path} is a directory with neither DeepSpeed model states '
        f'(*{_DEEPSPEED_SUFFIX}) nor FSDP shards (rank0.pth, ...); found '
        f'{sorted(names)[:8]}.')


def _fp32(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: (v.float() if v.is_floating_point() else v).contiguous()
            for k, v in state.items()}


def _safe_torch_load(path, map_location=None, *args, weights_only=None,
                     **kwargs):
    """Stands in for ``torch.load`` inside deepspeed's ``zero_to_fp32``."""
    from mmvlp.compat.strategies import safe_deepspeed_load
    return safe_deepspeed_load(path, map_location=map_location)


def consolidate_deepspeed(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """fp32 weights and mmengine ``meta`` of a DeepSpeed checkpoint dir.

    Args:
        path (str): The ``ITER.pth`` directory mmengine's
            ``DeepSpeedStrategy`` wrote (ZeRO stage 1, 2 or 3).

    Returns:
        tuple: The state dict (parameter names of the unwrapped model) and
        the checkpoint's ``meta`` (iteration, seed, config).
    """
    from deepspeed.utils import zero_to_fp32
    path = osp.abspath(path.rstrip('/'))
    model_files = sorted(f for f in os.listdir(path)
                         if f.endswith(_DEEPSPEED_SUFFIX))
    with mock.patch.object(torch, 'load', _safe_torch_load), \
            contextlib.redirect_stdout(open(os.devnull, 'w')):
        state = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(
            osp.dirname(path), tag=osp.basename(path))
        client = _safe_torch_load(osp.join(path, model_files[0]),
                                  map_location='cpu')
    # ZeRO-1 checkpoints list no frozen parameters for zero_to_fp32 (DeepSpeed
    # saves them only when gradients are partitioned, stage >= 2), but their
    # model states hold every weight: take the missing ones from there
    # (stage 3's model states hold empty placeholders, never taken).
    for key, value in (client.get('module') or {}).items():
        if key not in state and isinstance(value, torch.Tensor) and \
                value.numel() > 0:
            state[key] = value
    return _fp32(state), dict(client.get('meta') or {})


def consolidate_file(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """The weights and ``meta`` of a one-file checkpoint (``Runner``,
    ``FSDPStrategy`` full state dict, DeepSpeed ``save_optimizer=False``),
    loaded with mmvlp's safe loader; wrapper names are removed.
    """
    from .state_dicts import extract_state_dict
    from mmvlp.compat.torch_load import safe_torch_load
    from .inspection import CheckpointFileError, summarize_checkpoint
    checkpoint = safe_torch_load(path, map_location='cpu')
    meta = dict(checkpoint.get('meta') or {}) if isinstance(
        checkpoint, dict) else {}
    try:
        return _fp32(extract_state_dict(checkpoint)), meta
    except ValueError as error:
        summary = summarize_checkpoint(checkpoint, path)
        raise CheckpointFileError(
            f'{path} has no weights to consolidate ({error}); it holds '
            f'{summary.describe()}.') from None


def consolidate_fsdp_sharded(
        cfg, path: str) -> Tuple[Optional[Dict[str, torch.Tensor]], dict]:
    """Gather the shards of an FSDP ``state_dict_cfg='local'`` checkpoint.

    Call it in every process of a group of the size that wrote the shards
    (``tools/dist_run.sh N model_converters/consolidate_checkpoint.py``),
    after :func:`~mmvlp.runtime.setup_launch`. The model is built and wrapped
    by the config's ``FSDPStrategy`` exactly as in training, each rank loads
    its shard, and the full state dict is gathered on rank 0.

    Args:
        cfg (Config): The training config (its ``model`` and ``strategy``).
        path (str): The ``ITER.pth`` directory of ``rank{i}.pth`` files.

    Returns:
        tuple: On rank 0 the state dict and ``meta``; elsewhere ``None`` and
        ``meta``.
    """
    import tempfile

    from mmengine.dist import get_rank, get_world_size
    from mmengine.registry import STRATEGIES, init_default_scope
    from torch.distributed.fsdp import (FullStateDictConfig,
                                        FullyShardedDataParallel,
                                        StateDictType)

    from mmvlp.utils.accelerators import accelerator_available
    shards = [f for f in os.listdir(path) if f.startswith('rank')]
    if len(shards) != get_world_size():
        raise ValueError(
            f'{path} holds {len(shards)} shards but {get_world_size()} '
            f'process(es) run: start the tool with {len(shards)} processes '
            '(tools/dist_run.sh N model_converters/consolidate_checkpoint.py '
            '...).')
    init_default_scope(cfg.get('default_scope', 'mmvlp'))
    model_cfg = cfg.model.copy()
    if model_cfg.get('tokenizer_checkpoint'):
        # The shards hold the tokenizer's weights.
        model_cfg['tokenizer_checkpoint'] = None
    strategy_cfg = cfg.strategy.copy()
    strategy_cfg.update(
        work_dir=tempfile.mkdtemp(prefix='mmvlp_consolidate_'),
        env_kwargs=dict(launcher=cfg.get('launcher', 'pytorch'),
                        randomness=dict(seed=None)),
        log_kwargs=dict(log_level='WARNING'))
    strategy = STRATEGIES.build(strategy_cfg)
    strategy.prepare(model_cfg)
    checkpoint = strategy.load_checkpoint(path)
    config = FullStateDictConfig(offload_to_cpu=accelerator_available(),
                                 rank0_only=True)
    with FullyShardedDataParallel.state_dict_type(
            strategy.model, StateDictType.FULL_STATE_DICT, config):
        state = strategy.model.state_dict()
    meta = dict(checkpoint.get('meta') or {})
    if get_rank() != 0:
        return None, meta
    from .state_dicts import extract_state_dict
    return _fp32(extract_state_dict(dict(state_dict=state))), meta


def save_consolidated(state_dict: Dict[str, torch.Tensor], out: str,
                      source: str, meta: Optional[dict] = None) -> None:
    """Write ``{'meta': ..., 'state_dict': ...}`` to ``out``.

    ``meta`` keeps the run's ``iter``, ``epoch``, ``seed`` and
    ``experiment_name`` (plain values) and adds ``consolidated_from`` and a
    time stamp.
    """
    kept = {k: v for k, v in (meta or {}).items()
            if k in ('iter', 'epoch', 'seed', 'experiment_name')
            and isinstance(v, (int, float, str))}
    kept.update(consolidated_from=osp.abspath(source),
                time=time.strftime('%Y%m%d_%H%M%S', time.localtime()))
    from .files import atomic_torch_save
    atomic_torch_save(dict(meta=kept, state_dict=state_dict), out)
    total = sum(v.numel() for v in state_dict.values())
    print_log(f'Saved {len(state_dict)} tensors ({total / 1e6:.2f} M '
              f'values, fp32) from {source} to {out}.', logger='current')
