"""Fixes for mmengine 0.10.7's ``FlexibleRunner`` strategies (DeepSpeed,
FSDP) on torch 2.14 and deepspeed 0.19, applied at ``import mmvlp``.

Each fix patches behaviour in memory (never another package's files), is
idempotent and is listed in docs/compatibility.md with the test that
shows it (``tests/test_strategies.py``):

* ``register_deepspeed_optimizers`` imports ``deepspeed.runtime.fp16.onebit``,
  which deepspeed 0.19 no longer has, so building any ``DeepSpeedStrategy``
  failed: only the optimizers that exist are registered.
* ``MMDeepSpeedEngineWrapper`` casts *every* tensor under ``inputs_to_half``
  to the model's dtype, token ids and masks included (ids above 256 are not
  representable in bf16; embeddings refuse float indices): only
  floating-point tensors are cast.
* ``FlexibleRunner`` asks for one ``batch_size`` (DeepSpeed's
  ``train_micro_batch_size_per_gpu``); a multi-source ``train_dataloader``
  (``dict(image=..., text=..., pair=...)``) has one per source: the samples
  of one step on one process (their sum) are used.
* ``FSDPStrategy.load_optim_state_dict`` calls
  ``FSDP.optim_state_dict_to_load`` with the argument order of torch < 2.1
  ("unhashable type: 'dict'" on resume): the call is fixed.
* ``FSDPStrategy`` with ``state_dict_cfg='full'`` gathers the optimizer state
  with ``offload_to_cpu=True``; with the parameters already on the CPU torch
  then returns one buffer for every state of a parameter, so ``exp_avg`` is
  saved as a copy of ``exp_avg_sq`` and a resumed run silently diverges. On
  CPU-only hosts mmvlp gathers without offloading (the tensors are on the
  CPU anyway).
* gradient clipping of an ``OptimWrapper`` under FSDP computed the norm of
  each rank's own shards only (every rank clipped by another factor): the
  strategy makes the wrapper clip with ``FSDP.clip_grad_norm_``, the norm of
  the whole model.
* DeepSpeed loads its checkpoints with ``weights_only=False`` (any pickled
  object runs): mmvlp loads them with ``weights_only=True`` and the
  allow-list of :mod:`mmvlp.compat.torch_load` plus the few DeepSpeed
  types a checkpoint of a mmvlp run carries (see
  :func:`deepspeed_safe_globals`).
* DeepSpeed casts the whole model to bf16/fp16 and ZeRO-3 and FSDP
  partition it, the frozen visual tokenizer of BEiT-3 pretraining included
  (other MIM targets than under DDP; its 86 M parameters gathered every
  step): the modules a model names in ``frozen_modules`` are kept outside
  the wrapper, whole and fp32 on every rank (:func:`detach_frozen_modules`).
* ``MMSeparateDistributedDataParallel`` (QLIP stage 2, two optimizers)
  saved checkpoints whose keys its loader cannot find (``child.module.x``
  for ``child.x``): the trained weights of a multi-process run were not
  loaded, with a warning only. The state dict uses the plain names.
* FSDP sharded checkpoints (``state_dict_cfg='local'``: ``rank{i}.pth``)
  pickle ``ShardedTensor`` objects, one of whose parts is reached through
  ``builtins.getattr``. Loading them (resume, consolidation) allow-lists the
  sharded-tensor types *and* ``getattr``, scoped to those files, with a
  warning: a crafted file could then call functions. mmvlp's FSDP configs
  save full state dicts, which load with the ordinary allow-list.
"""
import contextlib
import functools
import logging
import pickle
from typing import Iterator, List

import torch
from mmengine.logging import print_log

from mmvlp.utils.accelerators import (accelerator_available,
                                      deepspeed_available)
from .torch_load import (UnsafeCheckpointError, _refusal,
                         allowed_checkpoint_globals)

__all__ = [
    'apply_strategy_patches', 'deepspeed_available',
    'register_deepspeed_optimizers', 'cast_floating_inputs',
    'multi_source_batch_size', 'deepspeed_safe_globals',
    'safe_deepspeed_load', 'fsdp_clip_grad_norm', 'fsdp_sharded_safe_globals',
    'detach_frozen_modules'
]

_APPLIED = False
# The real loader, for callers that stand in for ``torch.load`` while
# running deepspeed's own code (mmvlp.checkpoint.consolidation).
_TORCH_LOAD = torch.load


# --------------------------------------------------------------- DeepSpeed
#: Optimizers mmengine registers from deepspeed, by module; the 1-bit ones
#: (``deepspeed.runtime.fp16.onebit``) are gone from deepspeed 0.19.
_DEEPSPEED_OPTIMIZERS = (
    ('deepspeed.ops.adam', 'DeepSpeedCPUAdam'),
    ('deepspeed.ops.adam', 'FusedAdam'),
    ('deepspeed.ops.lamb', 'FusedLamb'),
    ('deepspeed.runtime.fp16.onebit', 'OnebitAdam'),
    ('deepspeed.runtime.fp16.onebit', 'OnebitLamb'),
    ('deepspeed.runtime.fp16.onebit', 'ZeroOneAdam'),
)


def register_deepspeed_optimizers() -> List[str]:
    """Register the deepspeed optimizers that exist in mmengine's
    ``OPTIMIZERS`` (what mmengine's function of this name does, without
    failing on the ones a deepspeed release removed).

    Returns:
        list[str]: The names registered (or already registered).
    """
    import importlib

    from mmengine.registry import OPTIMIZERS
    names = []
    if not deepspeed_available():
        return names
    for module_name, name in _DEEPSPEED_OPTIMIZERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        optimizer = getattr(module, name, None)
        if optimizer is None:
            continue
        if OPTIMIZERS.get(name) is None:
            OPTIMIZERS.register_module(module=optimizer)
        names.append(name)
    return names


def cast_floating_inputs(self, inputs):
    """``MMDeepSpeedEngineWrapper._cast_inputs_half`` that casts only
    floating-point tensors (images) to the engine's dtype and leaves token
    ids, masks and other integer or bool tensors as they are."""
    from mmengine.utils import apply_to
    if self._inputs_to_half is None:
        return inputs
    dtype = next(self.model.parameters()).dtype

    def is_float(x):
        return isinstance(x, torch.Tensor) and x.is_floating_point()

    def cast(value):
        return apply_to(value, is_float, lambda x: x.to(dtype))

    if isinstance(inputs, (list, tuple)):
        return inputs.__class__(
            cast(v) if i in self._inputs_to_half else v
            for i, v in enumerate(inputs))
    if isinstance(inputs, dict):
        for key in list(inputs):
            if key in self._inputs_to_half:
                inputs[key] = cast(inputs[key])
        return inputs
    raise TypeError('inputs should be list, tuple or dict, but got '
                    f'{type(inputs)}')


#: The deepspeed classes that its checkpoints of mmengine runs pickle
#: (found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on
#: ZeRO-1/2/3, fp32 and bf16 checkpoints): plain records of data.
_DEEPSPEED_TYPES = (
    ('deepspeed.runtime.zero.config', 'ZeroStageEnum'),
    ('deepspeed.utils.tensor_fragment', 'fragment_address'),
    ('deepspeed.runtime.fp16.loss_scaler', 'LossScaler'),
    ('deepspeed.runtime.fp16.loss_scaler', 'DynamicLossScaler'),
)


def _deepspeed_types() -> List:
    import importlib
    allowed = []
    for module_name, name in _DEEPSPEED_TYPES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            allowed.append(getattr(module, name))
    return allowed


def _mmengine_config_types() -> List:
    from mmengine.config import ConfigDict
    return [ConfigDict]


@contextlib.contextmanager
def deepspeed_safe_globals() -> Iterator[None]:
    """Allow-list what a DeepSpeed checkpoint of an mmengine run carries:
    the mmengine/numpy types of :func:`allowed_checkpoint_globals`,
    mmengine's ``ConfigDict`` (optimizer parameter groups) and the deepspeed
    records listed in ``_DEEPSPEED_TYPES``."""
    allowed = (allowed_checkpoint_globals() + _deepspeed_types() +
               _mmengine_config_types())
    with torch.serialization.safe_globals(allowed):
        yield


def safe_deepspeed_load(path, map_location=None):
    """``torch.load(path, weights_only=True)`` under
    :func:`deepspeed_safe_globals`.

    Raises:
        UnsafeCheckpointError: The file carries another pickled object.
    """
    with deepspeed_safe_globals():
        try:
            return _TORCH_LOAD(path, map_location=map_location,
                               weights_only=True)
        except pickle.UnpicklingError as error:
            if isinstance(error, UnsafeCheckpointError):
                raise
            raise _refusal(str(path), error) from None


def _safe_engine_load(self, path: str, map_location=None):
    """``TorchCheckpointEngine.load`` with ``weights_only=True``."""
    return safe_deepspeed_load(path, map_location=map_location)


# ------------------------------------------------------- FSDP local shards
def _sharded_tensor_types() -> List:
    from torch.distributed import remote_device
    from torch.distributed._shard import metadata
    from torch.distributed._shard.sharded_tensor import api, shard
    from torch.distributed._shard.sharded_tensor import \
        metadata as st_metadata
    from torch.distributed._shard.sharding_spec import (api as spec_api,
                                                        chunk_sharding_spec)
    return [
        remote_device._remote_device, metadata.ShardMetadata,
        st_metadata.ShardedTensorMetadata, st_metadata.TensorProperties,
        st_metadata.MEM_FORMAT_ENCODING, shard.Shard, api.ShardedTensor,
        api.ShardedTensor.ProcessGroupState,
        spec_api.EnumerableShardingSpec,
        chunk_sharding_spec.ChunkShardingSpec, getattr
    ]


@contextlib.contextmanager
def fsdp_sharded_safe_globals() -> Iterator[None]:
    """Allow-list what FSDP's local (sharded) state dicts pickle, including
    ``builtins.getattr`` (``ShardedTensor.ProcessGroupState`` is pickled
    through it); use it for checkpoints you wrote yourself."""
    print_log(
        'Loading an FSDP sharded checkpoint (rank{i}.pth): its ShardedTensor '
        'objects need builtins.getattr on the weights_only allow-list, which '
        'a crafted file could use to call functions. Load only sharded '
        'checkpoints you trust (mmvlp\'s FSDP configs save full state '
        'dicts, which need no getattr).',
        logger='current', level=logging.WARNING)
    with torch.serialization.safe_globals(_sharded_tensor_types()):
        yield


def _fsdp_load_checkpoint(original):

    @functools.wraps(original)
    def load_checkpoint(self, filename: str, **kwargs) -> dict:
        if self._is_full_state_dict():
            return original(self, filename, **kwargs)
        with fsdp_sharded_safe_globals():
            return original(self, filename, **kwargs)

    load_checkpoint._mmvlp_patched = True
    return load_checkpoint


# -------------------------------------------------------- FlexibleRunner
def multi_source_batch_size(dataloader) -> int:
    """Samples per process and step of a dataloader, its config, or a
    multi-source one (``dict(image=..., text=..., pair=...)`` configs or a
    :class:`~mmvlp.engine.MultiSourceLoader`): the sum over the sources.

    Args:
        dataloader: A ``DataLoader``, a dataloader config, a dict of them or
            an object with ``loaders``.

    Returns:
        int: The batch size.

    Raises:
        ValueError: No batch size can be found.
    """
    from torch.utils.data import DataLoader
    if isinstance(dataloader, DataLoader):
        return dataloader.batch_size or dataloader.batch_sampler.batch_size
    loaders = getattr(dataloader, 'loaders', None)
    if isinstance(loaders, dict):
        return sum(multi_source_batch_size(v) for v in loaders.values())
    if isinstance(dataloader, dict):
        if 'batch_size' in dataloader:
            return dataloader['batch_size']
        sampler = dataloader.get('batch_sampler')
        if isinstance(sampler, dict) and 'batch_size' in sampler:
            return sampler['batch_size']
        parts = [v for v in dataloader.values() if isinstance(v, dict)
                 or isinstance(v, DataLoader)]
        if parts and 'dataset' not in dataloader:
            return sum(multi_source_batch_size(v) for v in parts)
    raise ValueError(
        'Set batch_size in the dataloader (or in each source of a '
        f'multi-source dataloader); got {type(dataloader).__name__}.')


# ------------------------------------------------------------------ FSDP
def _fsdp_load_optim_state_dict(self, state_dict: dict) -> None:
    """``FSDPStrategy.load_optim_state_dict`` with torch >= 2.1's argument
    order of ``FSDP.optim_state_dict_to_load(model, optim, state_dict)``."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    optim_state_dict = FSDP.optim_state_dict_to_load(
        self.model, self.optim_wrapper.optimizer, state_dict)
    self.optim_wrapper.load_state_dict(optim_state_dict)


def _on_cpu_only_host() -> bool:
    return not accelerator_available()


def _fsdp_init_state_dict_cfg(original):

    @functools.wraps(original)
    def init_state_dict_cfg(self, state_dict_cfg) -> None:
        original(self, state_dict_cfg)
        from torch.distributed.fsdp.fully_sharded_data_parallel import \
            FullOptimStateDictConfig
        config = self.optim_state_dict_config
        if (isinstance(config, FullOptimStateDictConfig)
                and config.offload_to_cpu and _on_cpu_only_host()):
            # torch gathers every state of a parameter into one reused
            # buffer when offloading a CPU tensor "to the CPU": exp_avg
            # would be saved as a copy of exp_avg_sq.
            config.offload_to_cpu = False
            print_log(
                'FSDP on a CPU-only host: the full optimizer state is '
                'gathered with offload_to_cpu=False (with True, torch saves '
                'one Adam moment in place of the other).',
                logger='current', level=logging.DEBUG)

    init_state_dict_cfg._mmvlp_patched = True
    return init_state_dict_cfg


def fsdp_clip_grad_norm(model):
    """A ``clip_func`` for an ``OptimWrapper`` whose parameters are sharded
    by FSDP: the norm over the whole model (``model.clip_grad_norm_``), not
    over this rank's shards.

    Args:
        model (FullyShardedDataParallel): The root FSDP module.

    Returns:
        callable: ``clip(params, max_norm, norm_type=2.0)``.
    """

    def clip(params, max_norm, norm_type=2.0, **kwargs):
        return model.clip_grad_norm_(max_norm, norm_type)

    return clip


def _fsdp_prepare(original):

    @functools.wraps(original)
    def prepare(self, *args, **kwargs):
        components = original(self, *args, **kwargs)
        from mmengine.optim import OptimWrapper, OptimWrapperDict
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        wrapper = getattr(self, 'optim_wrapper', None)
        wrappers = (list(wrapper.values()) if isinstance(
            wrapper, OptimWrapperDict) else [wrapper])
        for item in wrappers:
            if (isinstance(item, OptimWrapper) and isinstance(self.model, FSDP)
                    and getattr(item, 'grad_name', None) == 'grad_norm'):
                item.clip_func = fsdp_clip_grad_norm(self.model)
        return components

    prepare._mmvlp_patched = True
    return prepare


# ------------------------------------------------- frozen modules outside
def detach_frozen_modules(model: torch.nn.Module,
                          device=None) -> List[str]:
    """Take the frozen submodules a model names in ``frozen_modules`` out of
    its module tree, in place (BEiT-3 pretraining: the visual tokenizer).

    They stay attributes of the model (its code calls them as before) but
    no wrapper sees them: DeepSpeed does not cast them to bf16/fp16 or
    partition them (ZeRO-3), FSDP does not flatten, shard and gather them
    every step (86 M parameters for the base tokenizer), and neither saves
    them (they come from their own checkpoint when the model is built).

    Args:
        model (nn.Module): The model before it is wrapped.
        device (optional): Where to move the detached modules (the wrapper
            moves only what it sees).

    Returns:
        list[str]: The names taken out.

    Raises:
        ValueError: A named module has trainable parameters.
    """
    names = []
    for name in getattr(model, 'frozen_modules', ()):
        module = model._modules.get(name)
        if module is None:
            continue
        trainable = [n for n, p in module.named_parameters()
                     if p.requires_grad]
        if trainable:
            raise ValueError(
                f'{type(model).__name__}.{name} is listed in frozen_modules '
                f'but has trainable parameters ({trainable[:3]}); freeze it '
                'or remove it from frozen_modules.')
        del model._modules[name]
        object.__setattr__(model, name, module)
        if device is not None:
            module.to(device)
        names.append(name)
    return names


def _strategy_half_dtype(strategy):
    config = getattr(strategy, 'config', None) or {}
    if (config.get('bf16') or {}).get('enabled'):
        return torch.bfloat16
    if (config.get('fp16') or {}).get('enabled'):
        return torch.float16
    return None


def _wrap_without_frozen(original, kind: str):
    """``_wrap_model`` of DeepSpeedStrategy / FSDPStrategy with the model's
    frozen modules kept outside (:func:`detach_frozen_modules`); under
    DeepSpeed half precision the model's ``target_autocast`` is set so the
    fp32 frozen modules run under autocast, as with AmpOptimWrapper."""

    @functools.wraps(original)
    def wrap_model(self, model):
        from mmengine.device import get_device
        names = detach_frozen_modules(model, get_device())
        if names:
            half = _strategy_half_dtype(self) if kind == 'DeepSpeed' \
                else None
            if half is not None:
                model.target_autocast = half
            print_log(
                f'{kind}: {", ".join(names)} kept outside the wrapper (frozen'
                f'; whole on every rank, fp32'
                f'{", autocast " + str(half) if half is not None else ""}'
                '; not saved in checkpoints).', logger='current')
        return original(self, model)

    wrap_model._mmvlp_patched = True
    return wrap_model


# ------------------------------------------- separately wrapped children
def _strip_wrapped_children(module, state_dict, prefix, local_metadata):
    """State-dict hook: ``child.module.x`` -> ``child.x`` for every child
    that a DDP wrapper holds."""
    from torch.nn.parallel import DistributedDataParallel
    for name, child in module.named_children():
        if not isinstance(child, DistributedDataParallel):
            continue
        old, new = f'{prefix}{name}.module.', f'{prefix}{name}.'
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[new + key[len(old):]] = state_dict.pop(key)
    return state_dict


def _separate_ddp_init(original):
    """``MMSeparateDistributedDataParallel`` wraps each trainable child of
    the model in its own DDP, so ``model.state_dict()`` (what mmengine
    saves) names their weights ``child.module.x``, while mmengine's loader
    unwraps wrappers and looks for ``child.x``: a checkpoint of a
    multi-process run (QLIP stage 2) loaded with a warning and without its
    trained weights. The model's state dict now uses the plain names."""

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.module._register_state_dict_hook(_strip_wrapped_children)

    init._mmvlp_patched = True
    return init


# ----------------------------------------------------------------- apply
def apply_strategy_patches() -> None:
    """Apply the fixes above once per process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    from mmengine.runner import _flexible_runner
    _flexible_runner._get_batch_size = multi_source_batch_size
    from mmengine.model import MMSeparateDistributedDataParallel as Separate
    if not getattr(Separate.__init__, '_mmvlp_patched', False):
        Separate.__init__ = _separate_ddp_init(Separate.__init__)

    try:
        from mmengine._strategy import deepspeed as mm_deepspeed
    except ImportError:  # pragma: no cover (mmengine always has the module)
        mm_deepspeed = None
    if mm_deepspeed is not None:
        mm_deepspeed.register_deepspeed_optimizers = \
            register_deepspeed_optimizers
        mm_deepspeed.MMDeepSpeedEngineWrapper._cast_inputs_half = \
            cast_floating_inputs
        strategy = mm_deepspeed.DeepSpeedStrategy
        if not getattr(strategy._wrap_model, '_mmvlp_patched', False):
            strategy._wrap_model = _wrap_without_frozen(
                strategy._wrap_model, 'DeepSpeed')
    if deepspeed_available():
        from deepspeed.runtime.checkpoint_engine import \
            torch_checkpoint_engine
        torch_checkpoint_engine.TorchCheckpointEngine.load = \
            _safe_engine_load

    try:
        from mmengine._strategy.fsdp import FSDPStrategy
    except ImportError:  # pragma: no cover (torch < 2.0)
        FSDPStrategy = None
    if FSDPStrategy is not None:
        FSDPStrategy.load_optim_state_dict = _fsdp_load_optim_state_dict
        if not getattr(FSDPStrategy._init_state_dict_cfg, '_mmvlp_patched',
                       False):
            FSDPStrategy._init_state_dict_cfg = _fsdp_init_state_dict_cfg(
                FSDPStrategy._init_state_dict_cfg)
        if not getattr(FSDPStrategy.prepare, '_mmvlp_patched', False):
            FSDPStrategy.prepare = _fsdp_prepare(FSDPStrategy.prepare)
        if not getattr(FSDPStrategy._wrap_model, '_mmvlp_patched', False):
            FSDPStrategy._wrap_model = _wrap_without_frozen(
                FSDPStrategy._wrap_model, 'FSDP')
        if not getattr(FSDPStrategy.load_checkpoint, '_mmvlp_patched',
                       False):
            FSDPStrategy.load_checkpoint = _fsdp_load_checkpoint(
                FSDPStrategy.load_checkpoint)
    _APPLIED = True
