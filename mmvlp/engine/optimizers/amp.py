"""Mixed precision wherever mmvlp trains: bf16 autocast on CPUs with bf16
units, and no loss scaler for bf16 on any device.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU/MUSA and always
builds a dynamic grad scaler. A scaler is what fp16 needs (its exponent range
is narrow); bf16 has fp32's range, and a dynamic scaler there only costs a
host synchronisation per step (its finite check) and takes the non-finite
gradient check away from ``NonFiniteLossHook``. mmvlp registers
:class:`AmpOptimWrapper` under mmengine's name (``mmvlp.compat``), so
``optim_wrapper=dict(type='AmpOptimWrapper', dtype='bfloat16')`` and
``tools/train.py --amp`` get it in every scope (mmvlp, mmpretrain, mmdet,
mmseg configs).
"""
import logging
from contextlib import contextmanager
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.optim.optimizer.amp_optimizer_wrapper import \
    AmpOptimWrapper as MMEngineAmpOptimWrapper

from mmvlp.compat.mmcv_ops import patch_mmcv_cpu_ops

__all__ = ['AmpOptimWrapper', 'cpu_bf16_support', 'register_amp_optim_wrapper']


def cpu_bf16_support() -> Tuple[bool, str]:
    """Whether this CPU has bf16 matrix units, and which.

    bf16 autocast runs on any CPU, but without AMX or AVX512-BF16 oneDNN
    emulates bf16 and the step gets slower, not faster.

    Returns:
        tuple[bool, str]: Supported, and the units seen (or why not).
    """
    cpu = torch.cpu
    units = [name for name, probe in (
        ('AMX', '_is_amx_tile_supported'),
        ('AVX512-BF16', '_is_avx512_bf16_supported'))
        if getattr(cpu, probe, lambda: False)()]
    if units:
        return True, ' and '.join(units)
    capability = torch.backends.cpu.get_cpu_capability()
    return False, (f'this CPU has neither AMX nor AVX512-BF16 (torch sees '
                   f'{capability}), so bf16 would be emulated and slower')


def _as_dtype(dtype: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    valid = MMEngineAmpOptimWrapper.valid_dtypes
    if dtype not in valid:
        raise ValueError(f'AmpOptimWrapper dtype must be one of {valid} or a '
                         f'torch.dtype, got {dtype!r}.')
    return getattr(torch, dtype)


class AmpOptimWrapper(MMEngineAmpOptimWrapper):
    """Automatic mixed precision with fp32 master weights, on CPU and GPU.

    The forward pass runs under ``torch.autocast`` (``optim_context``); the
    parameters, gradients and optimizer state stay fp32.

    * CPU: bf16 autocast when the CPU has AMX or AVX512-BF16
      (:func:`cpu_bf16_support`); elsewhere, or for another ``dtype``, the
      run stays fp32 and one log line says why.
    * CUDA: ``dtype`` as given (None: autocast's default, fp16); bf16 where
      the GPU supports it.
    * Other devices (NPU, MLU, MUSA): mmengine's behaviour.

    A loss scaler exists for fp16 only (dynamic by default; ``loss_scale``
    as in mmengine; ``use_fsdp`` gives FSDP's sharded scaler). bf16 trains
    unscaled: no per-step synchronisation, and ``NonFiniteLossHook`` checks
    the gradients itself. Checkpoints load across precisions: a scaler
    state is restored when both sides have one and dropped otherwise, so a
    run can resume in fp32 from a bf16 checkpoint and the other way round.

    Args:
        loss_scale (float | str | dict, optional): fp16 loss scaling:
            ``'dynamic'``, an initial scale or GradScaler arguments.
            Defaults to None (dynamic for fp16; ignored, with a log line,
            for bf16 and fp32).
        dtype (str | torch.dtype, optional): Autocast dtype, one of
            ``'float16'``, ``'bfloat16'``, ``'float32'``, ``'float64'``.
            Defaults to None (bf16 on CPU, autocast's default on GPU).
        use_fsdp (bool): Use FSDP's ``ShardedGradScaler`` for fp16.
            Defaults to False.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self,
                 loss_scale: Union[float, str, dict, None] = None,
                 dtype: Union[str, torch.dtype, None] = None,
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        self.device_type = get_device()
        if self.device_type not in ('cpu', 'cuda'):
            super().__init__(
                loss_scale='dynamic' if loss_scale is None else loss_scale,
                dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            self.autocast_enabled = True
            return
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        dtype = _as_dtype(dtype)
        enabled, why = True, None
        if self.device_type == 'cpu':
            dtype = dtype or torch.bfloat16
            if dtype != torch.bfloat16:
                enabled, why = False, (
                    f'CPU mixed precision is bfloat16 only, not {dtype} '
                    "(set dtype='bfloat16')")
            else:
                enabled, units = cpu_bf16_support()
                why = units if not enabled else None
                what = f'bf16 autocast on CPU ({units})'
                if enabled:  # mmdet's ops on CPU (mmvlp/compat/mmcv_ops.py)
                    patch_mmcv_cpu_ops()
        else:
            dtype = dtype or torch.get_autocast_dtype('cuda')
            if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
                raise RuntimeError(
                    'This GPU does not support bfloat16; set '
                    "optim_wrapper.dtype='float16'.")
            what = f'{str(dtype)[6:]} autocast on CUDA'
        if dtype in (torch.float32, torch.float64):
            enabled, why = False, f'dtype={dtype} asks for no lower precision'
        self.cast_dtype = dtype
        self.autocast_enabled = enabled
        self.loss_scaler = None
        if enabled and dtype == torch.float16:
            self.loss_scaler = self._build_scaler(
                'dynamic' if loss_scale is None else loss_scale, use_fsdp)
        elif loss_scale is not None and enabled:
            print_log(f'AmpOptimWrapper: loss_scale={loss_scale!r} ignored: '
                      f'{dtype} has the exponent range of fp32 and trains '
                      'unscaled.', logger='current', level=logging.WARNING)
        if not enabled:
            print_log(f'AmpOptimWrapper: training in fp32 because {why}.',
                      logger='current', level=logging.WARNING)
        else:
            scaler = 'a dynamic loss scaler' if self.loss_scaler is not None \
                and loss_scale in (None, 'dynamic') else (
                    'a loss scaler' if self.loss_scaler is not None else
                    'no loss scaler')
            print_log(f'AmpOptimWrapper: {what}, fp32 master weights, '
                      f'{scaler}.', logger='current')

    def _build_scaler(self, loss_scale, use_fsdp: bool):
        if use_fsdp:
            from torch.distributed.fsdp.sharded_grad_scaler import \
                ShardedGradScaler as scaler_type
            make = scaler_type
        else:
            def make(**kw):
                return torch.amp.GradScaler(self.device_type, **kw)
        if loss_scale == 'dynamic':
            return make()
        if isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            return make(init_scale=loss_scale)
        if isinstance(loss_scale, dict):
            return make(**loss_scale)
        raise TypeError('loss_scale must be a float, a dict or "dynamic", '
                        f'got {loss_scale!r}.')

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """Back-propagate ``loss`` (scaled when there is a loss scaler).

        Args:
            loss (Tensor): The loss of the current iteration.
            **kwargs: ``Tensor.backward`` arguments.
        """
        if self.loss_scaler is None:
            loss.backward(**kwargs)
            self._inner_count += 1
        else:
            super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        """Clip (if configured) and update the parameters; with a loss
        scaler, unscale first and let the scaler skip non-finite steps.

        Args:
            **kwargs: ``Optimizer.step`` arguments.
        """
        if self.loss_scaler is None:
            OptimWrapper.step(self, **kwargs)
        else:
            super().step(**kwargs)

    def state_dict(self) -> dict:
        """The optimizer state, plus ``loss_scaler`` when there is one."""
        state = OptimWrapper.state_dict(self)
        if self.loss_scaler is not None:
            state['loss_scaler'] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load the optimizer state; a saved scaler state is restored when
        this wrapper has a scaler and dropped otherwise (a checkpoint of
        another precision).

        Args:
            state_dict (dict): From :meth:`state_dict`, or from an fp32
                ``OptimWrapper``.
        """
        state_dict = dict(state_dict)
        scaler = state_dict.pop('loss_scaler', None)
        if scaler is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler)
        if 'base_param_settings' in state_dict:
            self.base_param_settings = state_dict.pop('base_param_settings')
        self.optimizer.load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """The forward pass's context: gradient accumulation (no DDP sync
        within a window) and autocast.

        Args:
            model (nn.Module): The training model.
        """
        if self.device_type not in ('cpu', 'cuda'):
            with super().optim_context(model):
                yield
            return
        with OptimWrapper.optim_context(self, model), torch.autocast(
                self.device_type, dtype=self.cast_dtype,
                enabled=self.autocast_enabled):
            yield


def register_amp_optim_wrapper() -> None:
    """Put :class:`AmpOptimWrapper` in mmengine's root ``OPTIM_WRAPPERS``
    under mmengine's name (idempotent).

    Every scope's registry falls back to the root, so
    ``type='AmpOptimWrapper'`` builds mmvlp's wrapper from mmvlp, mmpretrain,
    mmdet and mmseg configs alike. It subclasses mmengine's, so
    ``isinstance`` checks (FSDP's ``use_fsdp`` default) keep working.
    """
    from mmengine.registry import OPTIM_WRAPPERS
    OPTIM_WRAPPERS.register_module(name='AmpOptimWrapper',
                                   module=AmpOptimWrapper, force=True)
