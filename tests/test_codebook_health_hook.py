"""CodebookHealthHook: the logged usage, perplexity and dead codes of a
window, the collapse warning, and the window reset."""
import logging
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger

from mmvlp.engine.hooks.codebook_health import CodebookHealthHook
from mmvlp.models.quantizers import NormEMAVectorQuantizer


class Model(torch.nn.Module):

    def __init__(self, num_codes):
        super().__init__()
        self.quantizer = NormEMAVectorQuantizer(
            num_codes=num_codes, code_dims=num_codes, kmeans_init=False)
        with torch.no_grad():
            self.quantizer.codebook.copy_(torch.eye(num_codes))
        self.quantizer.eval()  # keep the codebook as it is


class Runner(SimpleNamespace):
    """What the hook uses of mmengine's Runner."""

    def __init__(self, model):
        records = []

        class Catcher(logging.Handler):

            def emit(self, record):
                records.append((record.levelno, record.getMessage()))

        logger = MMLogger.get_instance('codebook_health_test')
        logger.handlers = [Catcher()]
        logger.setLevel(logging.INFO)
        scalars = []
        visualizer = SimpleNamespace(
            add_scalars=lambda values, step: scalars.append((step, values)))
        super().__init__(model=model, logger=logger, visualizer=visualizer,
                         iter=0, records=records, scalars=scalars)

    def warnings(self):
        return [m for level, m in self.records if level == logging.WARNING]


def _step(hook, runner, codes):
    runner.model.quantizer(torch.eye(runner.model.quantizer.num_codes)[codes])
    hook.after_train_iter(runner, runner.iter)
    runner.iter += 1


def test_collapse_warning_and_window():
    hook = CodebookHealthHook(interval=2, warn_below=10.)
    runner = Runner(Model(num_codes=32))
    _step(hook, runner, [3, 3, 3, 3])
    assert not runner.scalars  # logs every 2 iterations
    _step(hook, runner, [3, 3, 3, 3])
    # One of 32 codes used (3.1% < 10%): collapse.
    step, values = runner.scalars[-1]
    assert step == 2
    assert values == {'codebook/quantizer/usage': pytest.approx(100 / 32),
                      'codebook/quantizer/perplexity': pytest.approx(1.),
                      'codebook/quantizer/dead_codes': 31.}
    warning, = runner.warnings()
    assert 'quantizer: only 3.1% of the codebook was used in the last 2 ' \
        'iterations (collapse?)' in warning
    assert 'dead_code_restart_steps' in warning
    # A new window: 8 different codes (25%), no new warning.
    _step(hook, runner, [0, 1, 2, 3])
    _step(hook, runner, [4, 5, 6, 7])
    step, values = runner.scalars[-1]
    assert step == 4
    assert values['codebook/quantizer/usage'] == pytest.approx(25.)
    assert values['codebook/quantizer/perplexity'] == pytest.approx(8.)
    assert len(runner.warnings()) == 1


def test_no_warning_when_disabled_or_healthy():
    hook = CodebookHealthHook(interval=1, warn_below=None)
    runner = Runner(Model(num_codes=32))
    _step(hook, runner, [0])
    assert runner.scalars and not runner.warnings()
    hook = CodebookHealthHook(interval=1, warn_below=10.)
    runner = Runner(Model(num_codes=8))
    _step(hook, runner, [0])  # 1 of 8 codes: 12.5%, above 10%
    assert not runner.warnings()
    with pytest.raises(ValueError, match='interval'):
        CodebookHealthHook(interval=0)
