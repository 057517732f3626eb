"""Log codebook health of the quantizers in a model while it trains."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmvlp.registry import HOOKS


def find_quantizers(model) -> dict:
    """Named submodules that keep codebook statistics."""
    if is_model_wrapper(model):
        model = model.module
    return {
        name or 'quantizer': module
        for name, module in model.named_modules()
        if hasattr(module, 'codebook_stats') and hasattr(module, 'reset_usage')
    }


@HOOKS.register_module()
class CodebookHealthHook(Hook):
    """Every ``interval`` iterations, log codebook usage (%), perplexity and
    dead codes of each quantizer over the codes chosen since the last log,
    then start a new window.

    Values are logged as ``codebook/<name>/usage`` etc. and sent to every
    visualization backend (TensorBoard, W&B, local ``scalars.json``).
    Usage is counted after all-reducing across ranks, so it is the same on
    every rank.

    Args:
        interval (int): Logging interval in iterations.
        warn_below (float, optional): Log a warning when usage (%) drops below
            this (codebook collapse).
    """
    priority = 'BELOW_NORMAL'

    def __init__(self, interval: int = 50,
                 warn_below: Optional[float] = 10.) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}.')
        self.interval = interval
        self.warn_below = warn_below

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        for name, quantizer in find_quantizers(runner.model).items():
            stats = quantizer.codebook_stats()
            scalars = {
                f'codebook/{name}/usage': 100. * stats['usage'],
                f'codebook/{name}/perplexity': stats['perplexity'],
                f'codebook/{name}/dead_codes': stats['dead_codes'],
            }
            runner.visualizer.add_scalars(scalars, step=runner.iter + 1)
            runner.logger.info(
                f'Iter {runner.iter + 1} ' + '  '.join(
                    f'{key}: {value:.4g}' for key, value in scalars.items()))
            usage = scalars[f'codebook/{name}/usage']
            if self.warn_below is not None and usage < self.warn_below:
                runner.logger.warning(
                    f'{name}: only {usage:.1f}% of the codebook was used in '
                    f'the last {self.interval} iterations (collapse?). '
                    'Consider dead_code_restart_steps in the quantizer.')
            quantizer.reset_usage()
