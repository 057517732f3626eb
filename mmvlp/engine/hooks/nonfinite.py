"""Skip training steps whose loss (or gradient) is not finite, stop after
too many in a row, and never save non-finite weights."""
import math
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict

from mmvlp.registry import HOOKS


def nonfinite_tensors(tree, prefix: str = '') -> List[str]:
    """Names of the floating-point tensors in a nested dict/list that hold
    NaN or infinity (``state_dict.backbone.cls_token``, ...)."""
    found = []
    local_shards = getattr(tree, 'local_shards', None)
    if callable(local_shards):
        # A ShardedTensor (FSDP sharded state dicts): check this rank's
        # shards; the other ranks check theirs.
        for index, shard in enumerate(local_shards()):
            found += nonfinite_tensors(shard.tensor, prefix)
        return found[:1]
    if isinstance(tree, torch.Tensor):
        if hasattr(tree, 'to_local'):  # a DTensor
            tree = tree.to_local()
        if tree.is_floating_point() and tree.numel() and \
                not bool(torch.isfinite(tree).all()):
            found.append(prefix or '<tensor>')
    elif isinstance(tree, dict):
        for key, value in tree.items():
            found += nonfinite_tensors(value, f'{prefix}.{key}'
                                       if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            found += nonfinite_tensors(value, f'{prefix}[{index}]')
    return found


class _Guard:
    """The guarded ``update_params`` of one ``OptimWrapper``.

    Reproduces ``OptimWrapper.update_params`` (scale, backward, step and
    zero at accumulation boundaries) with two checks: a non-finite loss on
    any rank skips the backward pass on every rank, and (without a loss
    scaler) non-finite gradients skip the optimizer step. A skipped
    micro-batch discards its whole accumulation window: gradients that are
    kept must have been all-reduced by the window's last backward.
    """

    def __init__(self, wrapper: OptimWrapper, check_grads: bool) -> None:
        self.wrapper = wrapper
        # A loss scaler (fp16) finds non-finite gradients itself and lowers
        # its scale instead of giving up on the step; bf16 and fp32 train
        # unscaled (mmvlp's AmpOptimWrapper has no scaler for bf16).
        self.check_grads = check_grads and getattr(
            wrapper, 'loss_scaler', None) is None
        self.poisoned = False  # the window saw a non-finite loss
        self.skipped: Optional[str] = None  # why the last call skipped

    def loss_is_finite(self, loss: torch.Tensor) -> bool:
        bad = (~torch.isfinite(loss.detach())).any().float().reshape(1)
        all_reduce(bad)  # every rank skips, or none does (DDP syncs)
        return not bool(bad.item())

    def grads_are_finite(self) -> bool:
        params = [p for group in self.wrapper.optimizer.param_groups
                  for p in group['params']]
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads, norm_type=math.inf)
            bad = (~torch.isfinite(norm)).float().reshape(1)
        else:  # still join the all-reduce of the other ranks
            bad = torch.zeros(1, device=params[0].device if params else None)
        all_reduce(bad)  # sharded gradients (FSDP) differ between ranks
        return not bool(bad.item())

    def __call__(self, loss: torch.Tensor,
                 step_kwargs: Optional[Dict] = None,
                 zero_kwargs: Optional[Dict] = None) -> None:
        wrapper = self.wrapper
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        self.skipped = None
        if not self.loss_is_finite(loss):
            self.skipped = 'loss'
            self.poisoned = True
            wrapper._inner_count += 1  # the micro-batch is used up
        else:
            wrapper.backward(wrapper.scale_loss(loss))
        if not wrapper.should_update():
            return
        if self.poisoned:
            self.skipped = self.skipped or 'loss'
        elif self.check_grads and not self.grads_are_finite():
            self.skipped = 'gradient'
        else:
            wrapper.step(**step_kwargs)
        wrapper.zero_grad(**zero_kwargs)
        self.poisoned = False


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Skip steps with a non-finite loss; stop after too many in a row.

    ``before_train`` wraps ``update_params`` of the runner's
    ``OptimWrapper`` / ``AmpOptimWrapper`` (each one of an
    ``OptimWrapperDict``). A step whose loss is NaN or infinite on any rank
    runs no backward pass and no optimizer step (weights, optimizer state
    and loss scale stay as they were), is counted
    (``train/nonfinite_steps`` in the log, kept across ``resume``) and
    logged with the losses that were not finite. Without a loss scaler
    (fp32, and bf16 with mmvlp's ``AmpOptimWrapper``), a finite loss whose
    gradients are not finite skips the step as well (with an fp16 loss
    scaler the scaler skips those steps and lowers its scale). The skipped
    step's non-finite losses are dropped from its outputs, so the logged
    losses are those of the steps that trained.
    ``max_consecutive`` such iterations in a row stop the run with a
    ``RuntimeError`` saying what to do. A checkpoint whose weights or
    optimizer state hold non-finite values is never written: saving raises
    instead.

    The loss check costs one host-device synchronisation and, with several
    ranks, an all-reduce of one number per step.

    Args:
        max_consecutive (int): Iterations in a row with a non-finite loss
            (or gradient) that stop training. 1 stops at the first.
        check_grads (bool): Also skip steps whose gradients are not finite
            (wrappers without a loss scaler only).
        check_checkpoints (bool): Refuse to save non-finite weights or
            optimizer state.
    """
    # Before RuntimeInfoHook copies the losses into the message hub.
    priority = 'HIGHEST'

    def __init__(self,
                 max_consecutive: int = 5,
                 check_grads: bool = True,
                 check_checkpoints: bool = True) -> None:
        if max_consecutive < 1:
            raise ValueError(
                f'max_consecutive must be >= 1, got {max_consecutive}.')
        self.max_consecutive = max_consecutive
        self.check_grads = check_grads
        self.check_checkpoints = check_checkpoints
        self.guards: List[_Guard] = []
        self.total = 0
        self.consecutive = 0
        self.first_bad_iter: Optional[int] = None

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        wrappers = list(wrapper.values()) if isinstance(
            wrapper, OptimWrapperDict) else [wrapper]
        self.guards = []
        for item in wrappers:
            if not isinstance(item, OptimWrapper) or \
                    type(item).update_params is not \
                    OptimWrapper.update_params:
                runner.logger.warning(
                    f'NonFiniteLossHook cannot guard {type(item).__name__} '
                    '(it has its own update_params): non-finite losses are '
                    'not skipped; checkpoints are still checked.')
                continue
            guard = item.update_params
            if not isinstance(guard, _Guard):  # one per wrapper, not nested
                guard = item.update_params = _Guard(item, self.check_grads)
            self.guards.append(guard)
        self.total = self.consecutive = 0
        if runner.iter > 0 and 'train/nonfinite_steps' in \
                runner.message_hub.log_scalars:
            self.total = int(runner.message_hub.get_scalar(
                'train/nonfinite_steps').current())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        reasons = {guard.skipped for guard in self.guards} - {None}
        for guard in self.guards:  # a wrapper may sit out the next step
            guard.skipped = None
        if not reasons:
            self.consecutive = 0
            self.first_bad_iter = None
            if self.total:
                runner.message_hub.update_scalar('train/nonfinite_steps',
                                                 self.total)
            return
        self.total += 1
        self.consecutive += 1
        if self.first_bad_iter is None:
            self.first_bad_iter = runner.iter + 1
        runner.message_hub.update_scalar('train/nonfinite_steps', self.total)
        # The skipped step's non-finite losses stay out of the message hub:
        # the logged (windowed) losses are those of the steps that trained.
        bad = {}
        for key, value in list((outputs or {}).items()):
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value.detach())
            if isinstance(value, float) and not math.isfinite(value):
                bad[key] = value
                del outputs[key]
        what = ('the gradients were not finite' if reasons == {'gradient'}
                else f'non-finite loss ({bad or "the total"})')
        runner.logger.warning(
            f'Iteration {runner.iter + 1}: {what}; skipped the update '
            f'({self.consecutive} in a row, {self.total} in this run).')
        if self.consecutive >= self.max_consecutive:
            last = runner.message_hub.get_info('last_ckpt')
            raise RuntimeError(
                f'Stopping: {self.consecutive} iterations in a row '
                f'({self.first_bad_iter}-{runner.iter + 1}) had a non-finite '
                f'loss or gradient ({what} at the last one), '
                f'NonFiniteLossHook.max_consecutive={self.max_consecutive}. '
                'Their updates were skipped, so the weights are '
                'still finite; the last checkpoint is '
                f'{last or "none yet"}. Usual causes: a learning rate too '
                'high for the batch size, fp16 overflow (try bf16 or a '
                'lower init scale), or bad inputs. Resume with a fix, e.g. '
                'tools/train.py CONFIG --resume CKPT --cfg-options '
                'optim_wrapper.optimizer.lr=...')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_checkpoints:
            return
        bad = nonfinite_tensors(
            {key: checkpoint[key] for key in ('state_dict', 'optimizer')
             if key in checkpoint})
        if bad:
            raise RuntimeError(
                f'Refusing to save a checkpoint at iteration {runner.iter + 1}'
                f': {len(bad)} tensor(s) hold NaN or infinity '
                f'({", ".join(bad[:5])}{", ..." if len(bad) > 5 else ""}). '
                'Resume from the last checkpoint '
                f'({runner.message_hub.get_info("last_ckpt") or "none yet"}) '
                'with a lower learning rate, or find the step that broke '
                'them in the log (NonFiniteLossHook skips steps whose loss '
                'or gradient is not finite).')
