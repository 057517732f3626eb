"""bf16 mixed precision on CPU with mmvlp's AmpOptimWrapper: the demo's
pretraining (BEiT-3, frozen VQ-KD targets, three sources) trains under bf16
autocast with fp32 master weights and no loss scaler, resumes exactly and
across precisions; CPUs without bf16 units (and fp16 on CPU) stay fp32 and
say why."""
import glob
import logging

import pytest
import torch
from helpers.demo_data import make_demo_with_spm
from mmengine.logging import MMLogger
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import Runner
from test_interruption import _assert_bitwise_equal
from test_pretrain_runner import _cfg

from mmvlp.engine.optimizers import AmpOptimWrapper, amp
from mmvlp.compat.torch_load import safe_torch_load

ITERS = 8


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_with_spm(tmp_path_factory.mktemp('amp'), num_train=12,
                              num_val=2)


@pytest.fixture
def bf16_cpu(monkeypatch):
    """bf16 units or not, the bf16 path runs (emulated where they lack)."""
    monkeypatch.setattr(amp, 'cpu_bf16_support', lambda: (True, 'test'))


def _tiny(demo_root, work_dir, max_iters=ITERS, interval=ITERS, **wrapper):
    """The demo pretraining, smaller; fp32 unless ``wrapper`` says
    otherwise."""
    cfg = _cfg(demo_root, work_dir, max_iters=max_iters)
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.pop('dtype', None)
    cfg.model.backbone.arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                                   feedforward_channels=64)
    for part in ('encoder', 'decoder'):
        cfg.model.tokenizer[part].arch = dict(
            embed_dims=16, num_layers=1, num_heads=1, feedforward_channels=32)
    cfg.default_hooks.checkpoint.interval = interval
    cfg.log_level = 'INFO'
    cfg.optim_wrapper.update(wrapper)
    return cfg


class DtypeProbe:
    """Output dtypes of a linear of the backbone and of the frozen
    tokenizer's encoder during training steps."""

    def __init__(self, model):
        self.seen = {'backbone': set(), 'tokenizer': set()}
        linear = next(m for m in model.backbone.modules()
                      if isinstance(m, torch.nn.Linear))
        tokenizer_linear = next(m for m in model.tokenizer.encoder.modules()
                                if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(self._hook('backbone'))
        tokenizer_linear.register_forward_hook(self._hook('tokenizer'))

    def _hook(self, name):
        def hook(module, args, output):
            self.seen[name].add(output.dtype)
        return hook


def _losses(runner):
    return runner.message_hub.get_scalar('train/loss').data[0]


def test_registered_under_mmengines_name():
    # Every scope (mmvlp, mmseg, ...) falls back to the root registry.
    assert OPTIM_WRAPPERS.get('AmpOptimWrapper') is AmpOptimWrapper
    from mmseg.registry import OPTIM_WRAPPERS as MMSEG_OPTIM_WRAPPERS
    assert MMSEG_OPTIM_WRAPPERS.get('AmpOptimWrapper') is AmpOptimWrapper


def test_pretraining_trains_in_bf16_and_resumes_exactly(demo_root, tmp_path,
                                                        bf16_cpu):
    cfg = _tiny(demo_root, tmp_path / 'whole', interval=ITERS // 2,
                type='AmpOptimWrapper', dtype='bfloat16')
    cfg.optim_wrapper.optimizer.lr = 3e-3
    cfg.log_processor = dict(by_epoch=False, window_size=ITERS)
    runner = Runner.from_cfg(cfg)
    probe = DtypeProbe(runner.model)
    runner.train()
    wrapper = runner.optim_wrapper
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.loss_scaler is None
    # Autocast was on in the step: the backbone's linears computed in bf16;
    # the weights, gradients and AdamW's moments are fp32.
    assert probe.seen['backbone'] == {torch.bfloat16}
    assert probe.seen['tokenizer'] == {torch.bfloat16}
    model = runner.model
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    moments = [s['exp_avg'] for s in wrapper.optimizer.state.values()]
    assert moments and {m.dtype for m in moments} == {torch.float32}
    losses = _losses(runner)
    assert len(losses) == ITERS
    assert sum(losses[-2:]) / 2 < 0.9 * sum(losses[:2]) / 2, losses
    log = open(glob.glob(str(tmp_path / 'whole' / '*' / '*.log'))[0]).read()
    assert 'bf16 autocast on CPU (test), fp32 master weights, no loss ' \
        'scaler' in log
    checkpoint = safe_torch_load(str(tmp_path / 'whole' / f'iter_{ITERS}.pth'))
    assert 'loss_scaler' not in checkpoint['optimizer']

    # Resume from the middle: the same final weights and optimizer state.
    cfg = _tiny(demo_root, tmp_path / 'resumed', interval=ITERS // 2,
                type='AmpOptimWrapper', dtype='bfloat16')
    cfg.optim_wrapper.optimizer.lr = 3e-3
    middle = str(tmp_path / 'whole' / f'iter_{ITERS // 2}.pth')
    cfg.resume, cfg.load_from = True, middle
    Runner.from_cfg(cfg).train()
    resumed = safe_torch_load(str(tmp_path / 'resumed' /
                                  f'iter_{ITERS}.pth'))
    _assert_bitwise_equal(
        (checkpoint['state_dict'], checkpoint['optimizer']),
        (resumed['state_dict'], resumed['optimizer']))

    # Across precisions: the bf16 checkpoint resumes in fp32 and on.
    cfg = _tiny(demo_root, tmp_path / 'fp32', max_iters=ITERS + 2,
                interval=ITERS + 2)
    cfg.resume, cfg.load_from = True, middle
    fp32 = Runner.from_cfg(cfg)
    fp32.train()
    assert fp32.iter == ITERS + 2
    step = next(iter(fp32.optim_wrapper.optimizer.state.values()))['step']
    assert int(step) == ITERS + 2  # AdamW's state came along
    assert type(fp32.optim_wrapper).__name__ == 'OptimWrapper'


def test_resume_from_fp32_and_fp16_checkpoints(demo_root, tmp_path,
                                               bf16_cpu):
    cfg = _tiny(demo_root, tmp_path / 'fp32', max_iters=2, interval=2)
    Runner.from_cfg(cfg).train()
    path = str(tmp_path / 'fp32' / 'iter_2.pth')
    # As if saved by an fp16 run on a GPU: its scaler state is dropped.
    checkpoint = safe_torch_load(path)
    checkpoint['optimizer']['loss_scaler'] = dict(scale=1024.)
    torch.save(checkpoint, str(tmp_path / 'fp16.pth'))
    for source in (path, str(tmp_path / 'fp16.pth')):
        cfg = _tiny(demo_root, tmp_path / 'bf16', max_iters=3, interval=3,
                    type='AmpOptimWrapper', dtype='bfloat16')
        cfg.resume, cfg.load_from = True, source
        runner = Runner.from_cfg(cfg)
        runner.train()
        assert runner.iter == 3 and runner.optim_wrapper.autocast_enabled
        step = next(iter(runner.optim_wrapper.optimizer.state.values()))[
            'step']
        assert int(step) == 3


def _wrapper(**kwargs):
    model = torch.nn.Linear(4, 4)
    return model, AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def _logged(records):
    return ' '.join(r.getMessage() for r in records)


@pytest.fixture
def log_records():
    logger = MMLogger.get_current_instance()
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.parametrize('case', ['no bf16 units', 'fp16', 'fp32'])
def test_stays_fp32_and_says_why(monkeypatch, log_records, case):
    monkeypatch.setattr(amp, 'cpu_bf16_support', lambda: (
        case != 'no bf16 units', 'this CPU has neither AMX nor AVX512-BF16'))
    dtype = {'no bf16 units': 'bfloat16', 'fp16': 'float16',
             'fp32': 'float32'}[case]
    model, wrapper = _wrapper(dtype=dtype, loss_scale='dynamic')
    with wrapper.optim_context(model):
        out = model(torch.ones(2, 4))
    assert out.dtype == torch.float32
    assert not wrapper.autocast_enabled and wrapper.loss_scaler is None
    why = {'no bf16 units': 'neither AMX nor AVX512-BF16',
           'fp16': "bfloat16 only, not torch.float16 (set dtype='bfloat16')",
           'fp32': 'asks for no lower precision'}[case]
    lines = [r.getMessage() for r in log_records]
    assert len(lines) == 1 and 'training in fp32 because' in lines[0] and \
        why in lines[0], lines


def test_bf16_ignores_a_loss_scale_and_steps_like_fp32(bf16_cpu,
                                                       log_records):
    """Without a scaler a bf16 step is the fp32 optimizer step on the
    gradients of the bf16 forward (clipping included)."""
    torch.manual_seed(0)
    model, wrapper = _wrapper(dtype='bfloat16', loss_scale='dynamic',
                              clip_grad=dict(max_norm=0.1))
    assert wrapper.loss_scaler is None
    assert "loss_scale='dynamic' ignored" in _logged(log_records)
    reference = torch.nn.Linear(4, 4)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(3, 4)
    with wrapper.optim_context(model):
        loss = model(x).float().pow(2).sum()
    wrapper.update_params(loss)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ref_loss = reference(x).float().pow(2).sum()
    ref_loss.backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1)
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert 'loss_scaler' not in wrapper.state_dict()


def test_cpu_bf16_support_reports_the_units(monkeypatch):
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: False)
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported',
                        lambda: True)
    assert amp.cpu_bf16_support() == (True, 'AVX512-BF16')
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported',
                        lambda: False)
    supported, why = amp.cpu_bf16_support()
    assert not supported and 'neither AMX nor AVX512-BF16' in why


VL_TASKS = ('retrieval', 'vqa', 'caption', 'nlvr2')


@pytest.fixture(scope='module')
def vl_data(tmp_path_factory):
    from mmvlp.datasets import make_demo_vl_dataset
    root = tmp_path_factory.mktemp('amp_vl')
    make_demo_with_spm(root / 'pre', num_train=24, num_val=2)
    make_demo_vl_dataset(str(root / 'vl'), num_train=8, num_val=4, size=48,
                         num_nlvr2=(8, 4))
    return str(root / 'vl'), str(root / 'pre' / 'text_spm.model')


@pytest.mark.parametrize('task', VL_TASKS)
def test_vl_task_trains_in_bf16(task, vl_data, tmp_path, bf16_cpu):
    """One step of each vision-language task model (the demo configs)
    under bf16 autocast: linears in bf16, finite loss, fp32 weights that
    moved."""
    import os.path as osp
    import sys

    from mmengine.config import Config, DictAction
    repo = osp.abspath(osp.join(osp.dirname(__file__), '..'))
    sys.path.insert(0, osp.join(repo, 'tools', 'demo'))
    from vl_demo import path_options, smoke_options
    config = f'configs/demo/beit3-tiny-p8_demo-vl-{task}.py'
    cfg = Config.fromfile(osp.join(repo, config))
    data, text_model = vl_data
    options = [o.split('=', 1) for o in path_options(
        config, data, text_model) + smoke_options(1, 2)]
    cfg.merge_from_dict({key: DictAction._parse_iterable(value)
                         for key, value in options})
    cfg.train_dataloader.batch_size = 4
    cfg.model.backbone.init_cfg = None
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.train_cfg.update(max_iters=1, val_interval=100)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.param_scheduler = None
    cfg.work_dir = str(tmp_path)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    seen = set()
    linear = next(m for m in runner.model.backbone.modules()
                  if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda m, a, out: seen.add(out.dtype))
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    assert seen == {torch.bfloat16}
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert torch.isfinite(torch.tensor(loss)), loss
    after = runner.model.state_dict()
    assert all(v.dtype != torch.bfloat16 for v in after.values())
    moved = [k for k, v in after.items()
             if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.') for k in moved)


def test_mmcv_cpu_ops_under_bf16():
    """mmcv's CPU nms and RoIAlign refuse bf16 (mmdet under CPU bf16
    autocast); patched, they give the float32 results of the bf16-rounded
    inputs in the input's dtype, and the gradient reaches the features."""
    from mmcv.ops import RoIAlign, batched_nms

    from mmvlp.compat.mmcv_ops import patch_mmcv_cpu_ops
    torch.manual_seed(0)
    xy = torch.rand(40, 2) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(40, 2) * 30], 1).bfloat16()
    scores = torch.rand(40).bfloat16()
    idxs = torch.randint(0, 3, (40, ))
    features = torch.randn(2, 4, 16, 16).bfloat16().requires_grad_()
    rois = torch.tensor([[0, 1., 1., 9., 9.], [1, 0., 2., 15., 7.]])
    layer = RoIAlign((3, 3), spatial_scale=1., sampling_ratio=2)
    assert patch_mmcv_cpu_ops() and patch_mmcv_cpu_ops()  # idempotent
    dets, keep = batched_nms(boxes, scores, idxs, dict(iou_threshold=0.5))
    ref_dets, ref_keep = batched_nms(boxes.float(), scores.float(), idxs,
                                     dict(iou_threshold=0.5))
    assert torch.equal(keep, ref_keep) and 0 < len(keep) < 40
    assert dets.dtype == torch.bfloat16
    assert torch.equal(dets, ref_dets.bfloat16())
    out = layer(features, rois.bfloat16())
    ref = layer(features.detach().float(), rois)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    out.float().sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
