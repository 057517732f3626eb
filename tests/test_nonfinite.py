"""NonFiniteLossHook: a step whose loss (or, without a loss scaler, whose
gradient) is not finite is skipped and counted; too many in a row stop the
run; non-finite weights never reach a checkpoint. With mmengine's Runner,
OptimWrapper, mmengine's AmpOptimWrapper (its scaler on CPU), mmvlp's
AmpOptimWrapper in bf16 (no scaler), and under two DDP
ranks where only one sees the bad loss."""
import glob
import math
import multiprocessing
import os
from datetime import timedelta

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import Runner

from mmvlp.engine.hooks.nonfinite import _Guard, nonfinite_tensors
from mmvlp.compat.torch_load import safe_torch_load

NAN, INF = math.nan, math.inf
GRAD_NAN = -1.0  # a sample whose loss is finite but whose gradient is NaN


class Toy(BaseModel):
    """``(w x - 1)^2``; for ``x = -1`` the loss is ``sqrt(0 w) = 0`` with a
    NaN gradient."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5]))

    def forward(self, inputs, mode='loss'):
        x = inputs.float()
        if bool((x == GRAD_NAN).all()):
            return dict(loss=torch.sqrt(self.w * 0).sum())
        return dict(loss=((self.w * x - 1)**2).mean())


class Values(torch.utils.data.Dataset):

    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([self.values[index]]))


class Record(Hook):
    """The weight and the optimizer's step count after every iteration."""
    priority = 'LOWEST'

    def __init__(self):
        self.weights, self.steps = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.weights.append(float(runner.model.w.detach()))
        state = runner.optim_wrapper.optimizer.state.get(runner.model.w, {})
        self.steps.append(int(state.get('step', 0)))


def _runner(tmp_path, values, model=None, optim_wrapper=None, interval=2,
            resume_from=None, **hook):
    record = Record()
    runner = Runner(
        model=model or Toy(), work_dir=str(tmp_path),
        experiment_name=f'nonfinite_{tmp_path.name}',
        train_dataloader=dict(
            dataset=Values(values), batch_size=1, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=len(values)),
        optim_wrapper=optim_wrapper or dict(
            optimizer=dict(type='AdamW', lr=0.1)),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=interval,
                            by_epoch=False, max_keep_ckpts=-1)),
        custom_hooks=[dict(type='mmvlp.NonFiniteLossHook', **hook), record],
        log_processor=dict(by_epoch=False, window_size=1),
        resume=resume_from is not None, load_from=resume_from,
        log_level='INFO')
    return runner, record


def _log(tmp_path):
    return open(glob.glob(f'{tmp_path}/*/*.log')[0]).read()


def _saved(tmp_path):
    return sorted(glob.glob(f'{tmp_path}/iter_*.pth'))


def test_skips_and_counts_nonfinite_losses(tmp_path):
    runner, record = _runner(tmp_path, [1, NAN, 1, INF, 1, GRAD_NAN, 1])
    runner.train()
    w = record.weights
    assert runner.iter == 7
    assert w[1] == w[0] and w[3] == w[2] and w[5] == w[4]  # skipped
    assert w[0] != 0.5 and w[2] != w[1] and w[6] != w[5]  # trained
    assert all(math.isfinite(v) for v in w)
    assert record.steps == [1, 1, 2, 2, 3, 3, 4]  # AdamW never stepped
    hub = runner.message_hub
    assert hub.get_scalar('train/nonfinite_steps').current() == 3
    # The skipped steps' non-finite losses are not in the logged history.
    assert all(math.isfinite(v) for v in hub.get_scalar(
        'train/loss').data[0])
    log = _log(tmp_path)
    assert "Iteration 2: non-finite loss ({'loss': nan})" in log
    assert "Iteration 4: non-finite loss ({'loss': inf})" in log
    assert 'Iteration 6: the gradients were not finite' in log
    assert 'nonfinite_steps: 3' in log
    for path in _saved(tmp_path):
        checkpoint = safe_torch_load(path)
        assert not nonfinite_tensors(
            {k: checkpoint[k] for k in ('state_dict', 'optimizer')}), path
    # The count continues after a resume.
    resumed, _ = _runner(tmp_path / 'resumed',
                         [1, NAN, 1, INF, 1, GRAD_NAN, 1, NAN],
                         resume_from=str(tmp_path / 'iter_6.pth'))
    resumed.train()
    assert resumed.message_hub.get_scalar(
        'train/nonfinite_steps').current() == 4


def test_stops_after_consecutive_nonfinite_losses(tmp_path):
    runner, record = _runner(tmp_path, [1, 1, NAN, NAN, NAN, 1],
                             interval=1, max_consecutive=3)
    with pytest.raises(RuntimeError, match=r'3 iterations in a row \(3-5\)'
                       r'.*max_consecutive=3.*last checkpoint is '
                       r'.*iter_4\.pth'):
        runner.train()
    assert runner.iter == 4  # stopped in iteration 5
    assert [os.path.basename(p) for p in _saved(tmp_path)] == [
        f'iter_{i}.pth' for i in range(1, 5)]
    for path in _saved(tmp_path):
        assert math.isfinite(float(
            safe_torch_load(path)['state_dict']['w']))


def test_never_saves_nonfinite_weights(tmp_path):
    """Without the gradient check a NaN gradient reaches the weights; the
    checkpoint that would hold them is refused."""
    runner, record = _runner(tmp_path, [1, GRAD_NAN, 1, 1],
                             check_grads=False)
    with pytest.raises(RuntimeError, match=r'Refusing to save a checkpoint '
                       r'at iteration 2: 3 tensor\(s\) hold NaN.*'
                       r'state_dict\.w'):
        runner.train()
    assert math.isnan(float(runner.model.w.detach()))  # it trained to NaN
    assert not _saved(tmp_path)


def _amp_wrapper(model, monkeypatch, init_scale=2.**8):
    """mmengine's AmpOptimWrapper on CPU: its GPU assertion lifted, bf16
    autocast and torch's CPU GradScaler instead of the disabled CUDA one."""
    monkeypatch.setattr(
        'mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available',
        lambda: True)
    wrapper = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        dtype='bfloat16')
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale)
    return wrapper


class ScaleRecord(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.scales = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.scales.append(runner.optim_wrapper.loss_scaler.get_scale())


def test_amp_optim_wrapper(tmp_path, monkeypatch):
    """A NaN loss is skipped before the scaler sees it (scale unchanged);
    a NaN gradient is left to the scaler, which skips the step and halves
    its scale (not counted as a skipped loss)."""
    model = Toy()
    runner, record = _runner(tmp_path, [1, NAN, 1, GRAD_NAN, 1], model=model,
                             optim_wrapper=_amp_wrapper(model, monkeypatch))
    scales = ScaleRecord()
    runner.register_hook(scales)
    runner.train()
    w = record.weights
    assert w[1] == w[0] and w[3] == w[2] and w[4] != w[3] and w[0] != 0.5
    assert scales.scales[:4] == [256., 256., 256., 128.]
    assert runner.message_hub.get_scalar(
        'train/nonfinite_steps').current() == 1
    assert 'Iteration 2: non-finite loss' in _log(tmp_path)


def test_bf16_amp_optim_wrapper_trains_unscaled_and_checks_gradients(
        tmp_path, monkeypatch):
    """mmvlp's AmpOptimWrapper in bf16 has no loss scaler (no per-step
    sync), so the hook checks the gradients itself: a NaN gradient skips
    the step and is counted, as without mixed precision."""
    monkeypatch.setattr('mmvlp.engine.optimizers.amp.cpu_bf16_support',
                        lambda: (True, 'test'))
    runner, record = _runner(tmp_path, [1, NAN, 1, GRAD_NAN, 1],
                             optim_wrapper=dict(type='AmpOptimWrapper',
                                                dtype='bfloat16',
                                                optimizer=dict(type='SGD',
                                                               lr=0.1)))
    runner.train()
    assert runner.optim_wrapper.loss_scaler is None
    assert runner.optim_wrapper.autocast_enabled
    w = record.weights
    assert w[1] == w[0] and w[3] == w[2] and w[4] != w[3] and w[0] != 0.5
    assert runner.message_hub.get_scalar(
        'train/nonfinite_steps').current() == 2
    log = _log(tmp_path)
    assert 'Iteration 4: the gradients were not finite' in log
    assert 'bf16 autocast on CPU (test), fp32 master weights, no loss ' \
        'scaler' in log


def _ddp_rank(rank, init_file, results):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=2,
        timeout=timedelta(seconds=30))
    model = nn.parallel.DistributedDataParallel(nn.Linear(2, 1))
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    guard = _Guard(wrapper, check_grads=True)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.ones(1, 2)
    bad = NAN if rank == 0 else 1.0  # only rank 0 sees a NaN loss
    guard(model(x).sum() * bad)
    same = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    guard(model(x).sum())  # a good step on both: DDP is still in step
    results[rank] = (guard.skipped, same,
                     [p.detach().tolist() for p in model.parameters()])
    torch.distributed.destroy_process_group()


def test_ranks_agree_to_skip(tmp_path):
    """A NaN loss on one rank skips the step on every rank (else the others
    would wait in DDP's gradient all-reduce for ever)."""
    context = multiprocessing.get_context('fork')
    results = context.Manager().dict()
    ranks = [context.Process(target=_ddp_rank,
                             args=(rank, tmp_path / 'init', results))
             for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=90)
    assert [p.exitcode for p in ranks] == [0, 0], 'a rank hung or failed'
    (skip0, same0, weights0), (skip1, same1, weights1) = results[0], \
        results[1]
    assert same0 and same1  # the NaN step changed nothing on either rank
    assert skip0 is skip1 is None  # the second step trained
    assert weights0 == weights1


def test_default_hook_set_to_none_is_turned_off(tmp_path):
    """``--cfg-options default_hooks.nonfinite=None`` turns the hook off, as
    ``=None`` does for mmengine's own default hooks (mmengine alone fails on
    an assertion for a name it does not know)."""
    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS

    from mmvlp.engine.hooks import NonFiniteLossHook
    from mmvlp.runtime import build_runner, drop_disabled_default_hooks
    MODELS.register_module('NonFiniteToy', module=Toy, force=True)
    DATASETS.register_module('NonFiniteValues', module=Values, force=True)

    def config():
        return Config(dict(
            model=dict(type='NonFiniteToy'), work_dir=str(tmp_path),
            train_dataloader=dict(
                dataset=dict(type='NonFiniteValues', values=[1., 2.]),
                batch_size=1, num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='default_collate')),
            train_cfg=dict(by_epoch=False, max_iters=2),
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.1)),
            default_hooks=dict(
                nonfinite=dict(type='mmvlp.NonFiniteLossHook'),
                timer=dict(type='IterTimerHook'))))

    def hook_types(runner):
        return [type(hook).__name__ for hook in runner.hooks]

    assert 'NonFiniteLossHook' in hook_types(build_runner(config()))
    cfg = config()
    cfg.merge_from_dict({'default_hooks.nonfinite': None,
                         'default_hooks.timer': None})
    with pytest.raises(AssertionError):
        Runner.from_cfg(cfg)  # what mmengine does with it
    runner = build_runner(cfg)
    assert not any(isinstance(h, NonFiniteLossHook) for h in runner.hooks)
    assert 'IterTimerHook' not in hook_types(runner)  # mmengine's own
    assert drop_disabled_default_hooks(Config(dict())) == []
