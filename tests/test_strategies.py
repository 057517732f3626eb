"""DDP, DeepSpeed ZeRO and FSDP on CPU (gloo): equivalence, resume,
consolidation and activation checkpointing, plus the fixes mmvlp applies to
mmengine's strategies (mmvlp/compat/strategies.py, launch.py).

The distributed part trains the tiny BEiT-3 pretraining config (2 layers,
width 64; images + texts + pairs, 1 sample per source, process and step) in
two launches of ``tests/helpers/strategy_runs.py``, each running many
trainings in one process group (every launch costs seconds of imports):

* 2 processes: DDP, ZeRO-1 fp32, ZeRO-2 fp32/bf16, ZeRO-3 fp32/bf16 and
  FSDP, each for 4 steps with activation checkpointing and a checkpoint at
  step 2, and each resumed from that checkpoint; FSDP with sharded
  checkpoints (consolidated and resumed); DDP, ZeRO-2 and FSDP with
  gradient clipping;
* 1 process: every strategy with batch 2 and with batch 1 x accumulation 2.

ZeRO-3 runs with ``stage3_param_persistence_threshold=0`` so that every
parameter of the tiny model is partitioned (each is below DeepSpeed's
default threshold of 1e5 elements), and every run records where the frozen
tokenizer is (outside DeepSpeed and FSDP, fp32).

Tolerances (relative, on the loss averaged over the ranks, per optimizer
step; measured differences were below 1e-6 for the first three):

* 2 processes x b vs 1 process x b x accumulation 2: the same samples in
  the same groups, so the same gradient: ``EXACT`` (1e-5 fp32, 1e-4 bf16).
* resume vs the uninterrupted run: ``EXACT``.
* fp32 strategies against DDP: ``EXACT``.
* 2 processes x b vs 1 process x 2b: the losses are means over the masked
  tokens of a batch; a rank averages over its own, one process over all,
  which weights the samples differently (not a bug: any data-parallel
  BEiT-3 does this): ``BATCH_TOL`` = 1% (measured up to ~0.2%).

The launches run CPU-only (``CUDA_VISIBLE_DEVICES=''``) on any host. Run
time measured on 2 CPU cores shared with other jobs (load average 6-7):
3 min 47 s for the file (2 min 16 s user CPU), of which 3 min for the two
launches and 24 s for the tools/train.py run.
"""
import json
import os
import os.path as osp
import re
import runpy
import subprocess
import sys

import pytest
import torch
from helpers.demo_data import make_demo_with_spm
from helpers.ports import free_port
from mmengine.config import Config

from mmvlp.compat.strategies import (cast_floating_inputs,
                                     multi_source_batch_size,
                                     register_deepspeed_optimizers,
                                     safe_deepspeed_load)
from mmvlp.runtime import launch
from mmvlp.runtime.batch_scaling import report_batch, set_accumulation
from mmvlp.runtime.launch import (cpu_strategy_cfg,
                                  deepspeed_optim_wrapper_cfg, strategy_type)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TESTS = osp.dirname(osp.abspath(__file__))
DRIVER = osp.join(TESTS, 'helpers', 'strategy_runs.py')
cpu_only = pytest.mark.skipif(launch.accelerator_available(),
                              reason='the CPU path of a CPU-only host')

#: (strategy, precision) pairs the brief asks for.
MATRIX = [('ddp', 'fp32'), ('zero1', 'fp32'), ('zero2', 'fp32'),
          ('zero2', 'bf16'), ('zero3', 'fp32'), ('zero3', 'bf16'),
          ('fsdp', 'fp32')]
EXACT = dict(fp32=1e-5, bf16=1e-4)
BATCH_TOL = 1e-2
STEPS = 4


def _name(strategy, precision, kind):
    return f'{strategy}_{precision}_{kind}'


def _specs(data_root, out):
    """The runs of the two launches."""
    two, one = [], []
    for strategy, precision in MATRIX:
        base = dict(strategy=strategy, precision=precision, batch=1,
                    max_iters=STEPS)
        name = _name(strategy, precision, '2p')
        two.append(dict(base, name=name, with_cp=True,
                        checkpoint_interval=2,
                        probe_fsdp_offload=strategy == 'fsdp'))
        two.append(dict(base, name=name + '_resume', with_cp=True,
                        checkpoint_interval=2,
                        resume_from=osp.join(out, name, 'iter_2.pth')))
        one.append(dict(base, name=_name(strategy, precision, '1p_2b'),
                        batch=2))
        one.append(dict(base, name=_name(strategy, precision, '1p_acc2'),
                        accumulate=2))
    sharded = dict(strategy='fsdp_sharded', precision='fp32', batch=1,
                   max_iters=STEPS, checkpoint_interval=2)
    two.append(dict(sharded, name='fsdp_sharded_2p', consolidate=True))
    two.append(dict(sharded, name='fsdp_sharded_2p_resume',
                    resume_from=osp.join(out, 'fsdp_sharded_2p',
                                         'iter_2.pth')))
    for strategy in ('ddp', 'zero2', 'fsdp'):
        two.append(dict(strategy=strategy, precision='fp32', batch=1,
                        max_iters=2, clip=1.0, name=f'{strategy}_clip_2p'))
    # One process: DeepSpeed runs first; the first starts the one-process
    # group (mmvlp.runtime.setup_launch) that the others join.
    one.sort(key=lambda run: not run['strategy'].startswith('zero'))
    return [dict(data_root=data_root, out=out, runs=runs)
            for runs in (two, one)]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=os.pathsep.join([REPO, TESTS]), **extra)
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT'):
        env.pop(key, None)
    return env


def _launch(spec, spec_file, nproc):
    with open(spec_file, 'w') as file:
        json.dump(spec, file)
    if nproc > 1:
        command = [sys.executable, '-m', 'torch.distributed.run',
                   f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
                   DRIVER, spec_file]
    else:
        command = [sys.executable, DRIVER, spec_file]
    result = subprocess.run(command, cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    return output


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Both launches; returns ``{name: record}`` plus the output dir."""
    root = tmp_path_factory.mktemp('strategies')
    data_root = make_demo_with_spm(root / 'data', num_train=16, num_val=2)
    out = str(root / 'runs')
    two, one = _specs(data_root, out)
    logs = [_launch(two, str(root / 'two.json'), 2),
            _launch(one, str(root / 'one.json'), 1)]
    records = {}
    for run in two['runs'] + one['runs']:
        path = osp.join(out, run['name'], 'record.json')
        assert osp.isfile(path), f'{run["name"]} wrote no record'
        with open(path) as file:
            records[run['name']] = json.load(file)
    return dict(records=records, out=out, logs=logs,
                runs={r['name']: r for r in two['runs'] + one['runs']})


def _losses(record):
    return [step['loss'] for step in record['steps']]


def _per_optimizer_step(losses, accumulate):
    return [sum(losses[i:i + accumulate]) / accumulate
            for i in range(0, len(losses), accumulate)]


def _close(a, b, rel, what):
    assert len(a) == len(b), what
    for step, (x, y) in enumerate(zip(a, b), 1):
        assert abs(x - y) <= rel * abs(y), (
            f'{what}: step {step}: {x} vs {y} (relative tolerance {rel})')


def _tiny_backbone(runs):
    """The backbone config of the runs (strategy_runs.tiny_cfg)."""
    sys.path.insert(0, osp.join(TESTS, 'helpers'))
    from strategy_runs import tiny_cfg
    run = dict(name='x', strategy='ddp', batch=1, max_iters=1)
    cfg = tiny_cfg(osp.join(osp.dirname(runs['out']), 'data'), run,
                   osp.dirname(runs['out']))
    backbone = dict(cfg.model.backbone)
    backbone.pop('type')
    return backbone


def _final_checkpoint(out, name):
    with open(osp.join(out, name, 'last_checkpoint')) as file:
        return file.read().strip()


def _consolidated(runs, name):
    """fp32 weights of a run's final checkpoint, consolidated."""
    from mmvlp.checkpoint.consolidation import (checkpoint_kind,
                                                consolidate_deepspeed,
                                                consolidate_file)
    path = _final_checkpoint(runs['out'], name)
    kind = checkpoint_kind(path)
    if kind == 'deepspeed':
        return consolidate_deepspeed(path)[0]
    if kind == 'file':
        return consolidate_file(path)[0]
    state = torch.load(osp.join(runs['out'], name, 'consolidated.pth'),
                       weights_only=True)
    return state['state_dict']


# ------------------------------------------------------------ the matrix
def test_every_run_wrote_its_final_checkpoint(runs):
    # Rank 1 has been seen to abort at exit on this stack: the checkpoint
    # is what counts, not only the exit code.
    for name, run in runs['runs'].items():
        path = _final_checkpoint(runs['out'], name)
        iters = run['max_iters'] * run.get('accumulate', 1)
        assert osp.basename(path) == f'iter_{iters}.pth', name
        assert osp.exists(path), name
        assert runs['records'][name]['steps'][-1]['iter'] == iters, name


@pytest.mark.parametrize('strategy,precision', MATRIX)
def test_two_processes_match_one_process(runs, strategy, precision):
    records = runs['records']
    two = _losses(records[_name(strategy, precision, '2p')])
    acc = _per_optimizer_step(
        _losses(records[_name(strategy, precision, '1p_acc2')]), 2)
    double = _losses(records[_name(strategy, precision, '1p_2b')])
    assert records[_name(strategy, precision, '2p')]['world_size'] == 2
    assert records[_name(strategy, precision, '1p_2b')]['world_size'] == 1
    _close(two, acc, EXACT[precision], f'{strategy} {precision}: 2 '
           'processes x 1 vs 1 x 1 x accumulation 2')
    _close(two, double, BATCH_TOL,
           f'{strategy} {precision}: 2 processes x 1 vs 1 process x 2')
    # The losses move: the comparison is not between constant curves.
    assert abs(two[-1] - two[0]) > 50 * EXACT[precision] * abs(two[0])


def test_fp32_strategies_agree_with_ddp(runs):
    records = runs['records']
    ddp = _losses(records[_name('ddp', 'fp32', '2p')])
    for strategy in ('zero1', 'zero2', 'zero3', 'fsdp'):
        _close(_losses(records[_name(strategy, 'fp32', '2p')]), ddp,
               EXACT['fp32'], f'{strategy} vs DDP')
    ddp_weights = _consolidated(runs, _name('ddp', 'fp32', '2p'))
    for strategy in ('zero1', 'zero2', 'zero3', 'fsdp'):
        weights = _consolidated(runs, _name(strategy, 'fp32', '2p'))
        # The frozen tokenizer is kept outside DeepSpeed and FSDP (and
        # their checkpoints); everything else is there.
        assert not any(k.startswith('tokenizer.') for k in weights)
        assert set(weights) == {k for k in ddp_weights
                                if not k.startswith('tokenizer.')}
        for key, value in weights.items():
            value = ddp_weights[key]
            torch.testing.assert_close(weights[key], value, rtol=1e-4,
                                       atol=1e-5, msg=f'{strategy} {key}')
    # bf16 follows fp32 closely, not exactly.
    for strategy in ('zero2', 'zero3'):
        _close(_losses(records[_name(strategy, 'bf16', '2p')]), ddp, 1e-2,
               f'{strategy} bf16 vs DDP fp32')


@pytest.mark.parametrize('strategy,precision', MATRIX)
def test_frozen_tokenizer_stays_outside_the_wrapper(runs, strategy,
                                                    precision):
    """DeepSpeed and FSDP neither cast nor shard the frozen tokenizer: it
    stays whole and fp32 on every rank, and its targets are computed under
    autocast when DeepSpeed runs in bf16 (as under AmpOptimWrapper)."""
    tokenizer = runs['records'][_name(strategy, precision, '2p')][
        'tokenizer']
    assert tokenizer['dtypes'] == ['torch.float32']
    assert tokenizer['in_module_tree'] == (strategy == 'ddp')
    assert tokenizer['sharded'] is False
    assert tokenizer['target_autocast'] == (
        'torch.bfloat16' if precision == 'bf16' else None)


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_zero3_partitions_every_parameter(runs, precision):
    """With ``stage3_param_persistence_threshold=0`` no parameter stays
    whole: each rank keeps about half of every one between steps (with the
    default threshold of 1e5 elements every parameter of this tiny model
    would stay whole, and ZeRO-3 would not be tested)."""
    for kind in ('2p', '2p_resume'):
        record = runs['records'][_name('zero3', precision, kind)]
        partition = record['zero3_partition']
        assert partition['parameters'] > 50
        assert partition['persistent'] == 0
        assert partition['partitioned'] == partition['parameters']
        # Each rank's partitions are half of all elements (padded up to a
        # multiple of the world size per parameter).
        assert partition['elements'] / 2 <= partition['local_elements'] \
            <= partition['elements'] / 2 + partition['parameters']
    assert runs['records'][_name('ddp', 'fp32', '2p')]['zero3_partition'] \
        == {}


@pytest.mark.parametrize('strategy,precision',
                         MATRIX + [('fsdp_sharded', 'fp32')])
def test_resume_continues_identically(runs, strategy, precision):
    name = (_name(strategy, precision, '2p')
            if strategy != 'fsdp_sharded' else 'fsdp_sharded_2p')
    whole = runs['records'][name]['steps']
    resumed = runs['records'][name + '_resume']['steps']
    assert [s['iter'] for s in resumed] == [3, 4]
    _close([s['loss'] for s in resumed], [s['loss'] for s in whole[2:]],
           EXACT[precision], f'{name} resumed at 2')
    if strategy == 'fsdp_sharded':
        return
    expected = _consolidated(runs, name)
    got = _consolidated(runs, name + '_resume')
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6,
                                   msg=f'{name} {key}')


@pytest.mark.parametrize('strategy,precision',
                         MATRIX + [('fsdp_sharded', 'fp32')])
def test_consolidated_checkpoint_loads_into_beit3(runs, strategy, precision,
                                                  tmp_path):
    from mmvlp.models import BEiT3
    from mmvlp.models.backbones.beit3_checkpoint import load_pretrained_beit3
    from mmvlp.checkpoint.consolidation import save_consolidated
    name = (_name(strategy, precision, '2p')
            if strategy != 'fsdp_sharded' else 'fsdp_sharded_2p')
    state = _consolidated(runs, name)
    assert all(v.dtype != torch.bfloat16 for v in state.values())
    path = str(tmp_path / 'consolidated.pth')
    save_consolidated(state, path, name, dict(iter=STEPS))
    backbone = _tiny_backbone(runs)
    model = BEiT3(**backbone)
    missing, unexpected = load_pretrained_beit3(model, path,
                                                prefix='backbone.',
                                                strict=True)
    assert missing == [] and unexpected == []
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state['backbone.' + key])
    # ... and through init_cfg, as downstream configs do.
    model = BEiT3(**backbone, init_cfg=dict(type='Pretrained',
                                            checkpoint=path,
                                            prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.patch_embed.proj.weight,
                               state['backbone.patch_embed.proj.weight'])


def test_consolidation_tool(runs, tmp_path):
    name = _name('zero3', 'bf16', '2p')
    out = str(tmp_path / 'zero3.pth')
    tool = osp.join(REPO, 'tools', 'model_converters',
                    'consolidate_checkpoint.py')
    # The tool's main in this process (a DeepSpeed directory needs no
    # process group).
    argv = sys.argv
    sys.argv = [tool, _final_checkpoint(runs['out'], name), out]
    try:
        runpy.run_path(tool, run_name='__main__')
    finally:
        sys.argv = argv
    saved = torch.load(out, weights_only=True)
    assert saved['meta']['iter'] == STEPS
    expected = _consolidated(runs, name)
    assert saved['state_dict'].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(saved['state_dict'][key], value), key


@pytest.mark.parametrize('strategy,precision', MATRIX)
def test_activation_checkpointing_recomputes_and_saves_memory(
        runs, strategy, precision):
    # 2-process runs checkpoint every layer, 1-process accumulation runs do
    # not; both see 1 sample per source and forward pass.
    with_cp = runs['records'][_name(strategy, precision, '2p')]['steps']
    without = runs['records'][_name(strategy, precision, '1p_acc2')]['steps']
    layers, passes = 2, 3  # image, text and pair forward passes per step
    assert all(s['layer_calls'] == layers * passes for s in without)
    assert all(s['layer_calls'] == 2 * layers * passes for s in with_cp)
    saved_cp = min(s['saved_bytes'] for s in with_cp[1:])
    saved = min(s['saved_bytes'] for s in without[1:])
    assert saved_cp < 0.5 * saved, (strategy, saved_cp, saved)


def test_fsdp_clips_with_the_norm_of_the_whole_model(runs):
    records = runs['records']
    ddp = _losses(records['ddp_clip_2p'])
    _close(_losses(records['fsdp_clip_2p']), ddp, EXACT['fp32'],
           'FSDP vs DDP with clip_grad')
    _close(_losses(records['zero2_clip_2p']), ddp, EXACT['fp32'],
           'ZeRO-2 (gradient_clipping) vs DDP with clip_grad')
    # Clipping was active: the clipped runs differ from the unclipped.
    unclipped = _losses(records[_name('ddp', 'fp32', '2p')])[:2]
    assert abs(ddp[1] - unclipped[1]) > 1e-3


def test_fsdp_full_optimizer_state_keeps_both_moments(runs):
    name = _name('fsdp', 'fp32', '2p')
    with open(osp.join(runs['out'], name, 'fsdp_offload_probe.json')) as f:
        probe = json.load(f)
    # What torch does with mmengine's default (offload_to_cpu=True) on CPU:
    assert probe['exp_avg_equals_exp_avg_sq'], (
        'torch no longer returns exp_avg == exp_avg_sq with offload_to_cpu '
        'on CPU; the workaround in mmvlp/compat/strategies.py may go')
    # What mmvlp saves:
    from mmvlp.compat.torch_load import safe_torch_load
    checkpoint = safe_torch_load(_final_checkpoint(runs['out'], name))
    moments = [s for s in checkpoint['optimizer']['state'].values()
               if 'exp_avg' in s]
    assert len(moments) == probe['parameters'] > 0
    assert not any(torch.equal(s['exp_avg'], s['exp_avg_sq'])
                   for s in moments)


def test_fsdp_sharded_consolidation_equals_full_state_dict(runs):
    sharded = _consolidated(runs, 'fsdp_sharded_2p')
    full = _consolidated(runs, _name('fsdp', 'fp32', '2p'))
    assert sharded.keys() == full.keys()
    # Same training; the full run also checkpointed activations.
    for key, value in full.items():
        torch.testing.assert_close(sharded[key], value, rtol=1e-5,
                                   atol=1e-6, msg=key)


def test_one_process_deepspeed_needs_no_torchrun(runs):
    log = runs['logs'][1]
    assert 'DeepSpeedStrategy in one process: starting a one-process group' \
        in log
    assert 'mpi4py' not in log


def test_train_py_trains_a_tokenizer_under_deepspeed(runs, tmp_path):
    """tools/train.py in one process (no torchrun) on a config that
    inherits the VQ-KD demo recipe and the ZeRO-2 bf16 strategy file, with
    --accumulate 2: the effective batch is printed, the k-means init, EMA
    codebook and validation run, the checkpoint is written."""
    config = tmp_path / 'vqkd_zero2.py'
    config.write_text(
        "_base_ = ['{0}/configs/tokenizers/vqkd_vit-tiny-p16_hog_demo.py',\n"
        "          '{0}/configs/_base_/strategies/deepspeed_zero2.py']\n"
        .format(REPO))
    data_root = osp.join(osp.dirname(runs['out']), 'data')
    work_dir = tmp_path / 'work'
    options = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'train_cfg.max_iters=4',
        'default_hooks.logger.interval=1', 'custom_hooks=[]'
    ]
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), str(config),
         '--work-dir', str(work_dir), '--accumulate', '2',
         '--cfg-options'] + options,
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert ('Effective batch: 1 process x 4 x accumulation 2 = 8 samples '
            'per optimizer step.') in output
    assert 'gradient_accumulation_steps=2' in output
    assert 'precision bf16 from the strategy' in output
    assert 'codebook/usage' in output  # validation ran
    assert osp.isfile(work_dir / 'iter_8.pth' / 'mp_rank_00_model_states.pt')


# -------------------------------------------------------- unit tests
def test_deepspeed_optimizers_register_without_onebit():
    names = register_deepspeed_optimizers()
    assert {'DeepSpeedCPUAdam', 'FusedAdam', 'FusedLamb'} <= set(names)
    from mmengine.registry import OPTIMIZERS
    assert OPTIMIZERS.get('FusedAdam') is not None
    # mmengine's own function imported deepspeed.runtime.fp16.onebit.
    from mmengine._strategy import deepspeed as mm_deepspeed
    assert mm_deepspeed.register_deepspeed_optimizers is \
        register_deepspeed_optimizers


def _recipe_cfg(**wrapper):
    return Config(dict(
        strategy=dict(type='DeepSpeedStrategy',
                      zero_optimization=dict(stage=2),
                      bf16=dict(enabled=True)),
        optim_wrapper=dict(type='AmpOptimWrapper', dtype='bfloat16',
                           optimizer=dict(type='AdamW', lr=1e-3),
                           paramwise_cfg=dict(norm_decay_mult=0.),
                           **wrapper)))


def test_deepspeed_optim_wrapper_cfg_moves_settings_to_the_strategy():
    cfg = _recipe_cfg(clip_grad=dict(max_norm=3.), accumulative_counts=4)
    deepspeed_optim_wrapper_cfg(cfg)
    assert cfg.optim_wrapper == dict(
        type='DeepSpeedOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
        paramwise_cfg=dict(norm_decay_mult=0.))
    assert cfg.strategy.gradient_clipping == 3.
    assert cfg.strategy.gradient_accumulation_steps == 4
    assert cfg.strategy.inputs_to_half == ['inputs']
    # No clip_grad: no clipping (deepspeed 0.19 would clip at 1.0).
    cfg = _recipe_cfg()
    deepspeed_optim_wrapper_cfg(cfg)
    assert cfg.strategy.gradient_clipping == 0.
    assert 'gradient_accumulation_steps' not in cfg.strategy
    # Settings given twice must agree; value clipping has no DeepSpeed form.
    cfg = _recipe_cfg(clip_grad=dict(max_norm=3.))
    cfg.strategy.gradient_clipping = 1.
    with pytest.raises(ValueError, match='disagree'):
        deepspeed_optim_wrapper_cfg(cfg)
    cfg = _recipe_cfg(clip_grad=dict(type='value', clip_value=1.))
    with pytest.raises(ValueError, match='norm only'):
        deepspeed_optim_wrapper_cfg(cfg)
    cfg = _recipe_cfg()
    cfg.optim_wrapper = dict(constructor='MultiOptimWrapperConstructor',
                             generator=dict(optimizer=dict(type='AdamW')))
    with pytest.raises(ValueError, match='one optimizer'):
        deepspeed_optim_wrapper_cfg(cfg)


def test_cast_floating_inputs_keeps_ids_and_masks():

    class Engine:
        _inputs_to_half = ['inputs']

        class model:

            @staticmethod
            def parameters():
                yield torch.zeros(1, dtype=torch.bfloat16)

    data = dict(inputs=dict(pair=dict(
        images=torch.rand(1, 3, 4, 4),
        text_ids=torch.tensor([[0, 64000, 2]]),
        vision_mask=torch.ones(1, 2, 2, dtype=torch.bool))),
        data_samples=None)
    out = cast_floating_inputs(Engine(), data)['inputs']['pair']
    assert out['images'].dtype == torch.bfloat16
    assert out['text_ids'].dtype == torch.int64
    assert out['text_ids'][0, 1] == 64000  # not representable in bf16
    assert out['vision_mask'].dtype == torch.bool


def test_multi_source_batch_size():
    loaders = dict(image=dict(batch_size=32, dataset=dict()),
                   text=dict(batch_size=16, dataset=dict()),
                   pair=dict(batch_size=8, dataset=dict()))
    assert multi_source_batch_size(loaders) == 56
    assert multi_source_batch_size(dict(batch_size=4, dataset=dict())) == 4
    with pytest.raises(ValueError, match='Set batch_size'):
        multi_source_batch_size(dict(dataset=dict()))
    from mmengine.runner import _flexible_runner
    assert _flexible_runner._get_batch_size is multi_source_batch_size


def test_cpu_strategy_cfg():
    cfg = Config(dict(strategy=dict(type='FSDPStrategy',
                                    model_wrapper=dict(use_orig_params=True))))
    cpu_strategy_cfg(cfg)
    assert cfg.strategy.model_wrapper.device_id == 'cpu'
    # The recipes' bf16 policy is for GPUs: CPU runs keep fp32 weights.
    base = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'strategies',
                                    'fsdp.py'))
    assert base.strategy.model_wrapper.mixed_precision.param_dtype == \
        'bfloat16'
    cpu_strategy_cfg(base)
    assert 'mixed_precision' not in base.strategy.model_wrapper
    cfg = Config(dict(strategy=dict(type='DDPStrategy')))
    cpu_strategy_cfg(cfg)
    assert cfg.strategy.model_wrapper.device_ids is None
    cfg = Config(dict(strategy=dict(type='FSDPStrategy',
                                    model_wrapper=dict(device_id=0))))
    with pytest.raises(ValueError, match='CUDA device'):
        cpu_strategy_cfg(cfg)
    assert strategy_type(Config(dict())) is None


@cpu_only
def test_fsdp_full_state_dict_gathers_optimizer_without_offload(tmp_path):
    from mmengine._strategy import FSDPStrategy
    strategy = FSDPStrategy(state_dict_cfg='full', work_dir=str(tmp_path))
    assert strategy.optim_state_dict_config.offload_to_cpu is False
    assert strategy.state_dict_config.offload_to_cpu is True  # unaffected


def test_set_accumulation_keeps_the_schedule_in_optimizer_steps():
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'beit3', 'beit3-base-p16_64xb32x3-1m_pretrain.py'))
    set_accumulation(cfg, 8)
    assert cfg.optim_wrapper.accumulative_counts == 8
    assert cfg.train_cfg.max_iters == 8 * 1000000
    assert [(s['begin'], s['end']) for s in cfg.param_scheduler] == [
        (0, 8 * 10000), (8 * 10000, 8 * 1000000)]
    assert cfg.default_hooks.checkpoint.interval == 8 * 10000
    with pytest.raises(ValueError, match='already accumulates'):
        set_accumulation(cfg, 2)
    # 8 processes x 32 per source x 8 = the paper's 2048 per source.
    info = report_batch(cfg, world_size=8)
    assert info['effective'] == dict(image=2048, text=2048, pair=2048)
    assert info['total'] == 6144 and info['lr'] == 1e-3
    # auto_scale_lr counts the accumulation and every source.
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=6144)
    info = report_batch(cfg, world_size=4)
    assert info['scaled_by'] == 0.5 and info['lr'] == 5e-4
    assert cfg.optim_wrapper.optimizer.lr == 5e-4
    assert cfg.auto_scale_lr.enable is False  # mmengine must not rescale


def test_deepspeed_checkpoints_load_safely(tmp_path):
    path = str(tmp_path / 'evil.pt')
    torch.save(dict(module={}, payload=os.system), path)
    from mmvlp.compat.torch_load import UnsafeCheckpointError
    with pytest.raises(UnsafeCheckpointError, match='system'):
        safe_deepspeed_load(path)
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import \
        TorchCheckpointEngine
    with pytest.raises(UnsafeCheckpointError):
        TorchCheckpointEngine.load(None, path)


def test_multiway_layer_wrap_policy():
    from mmengine.registry import FUNCTIONS

    from mmvlp.models import BEiT3
    policy = FUNCTIONS.get('mmvlp.multiway_layer_wrap_policy')
    model = BEiT3(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                            feedforward_channels=64), img_size=32,
                  patch_size=8)
    wrapped = [name for name, module in model.named_modules()
               if policy(module, recurse=False, nonwrapped_numel=0)]
    assert wrapped == ['layers.0', 'layers.1']
    assert policy(model, recurse=True, nonwrapped_numel=0)


STRATEGY_CONFIGS = sorted(
    osp.join(folder, name)
    for folder in ('configs/beit3', 'configs/tokenizers')
    for name in os.listdir(osp.join(REPO, folder))
    if '_deepspeed-zero' in name or '_fsdp_' in name)


def _recipe_and_strategy_file(name):
    """The recipe a strategy config is named after and its strategy file,
    e.g. ``beit3-base-p16_deepspeed-zero1-bf16_64xb32x3-1m_pretrain.py`` ->
    ``beit3-base-p16_64xb32x3-1m_pretrain.py`` and
    ``_base_/strategies/deepspeed_zero1.py``."""
    match = re.search(r'_(deepspeed-zero(\d)-bf16|fsdp)_', name)
    recipe = name[:match.start()] + '_' + name[match.end():]
    strategy = (f'deepspeed_zero{match.group(2)}' if match.group(2) else
                'fsdp')
    return recipe, osp.join('configs', '_base_', 'strategies',
                            strategy + '.py')


def test_strategy_configs_are_the_recipes_plus_one_strategy_file():
    assert len(STRATEGY_CONFIGS) == 16  # 3 BEiT-3 sizes and VQ-KD x 4
    from mmengine.registry import FUNCTIONS
    for name in STRATEGY_CONFIGS:
        cfg = Config.fromfile(osp.join(REPO, name))
        recipe_name, strategy_file = _recipe_and_strategy_file(name)
        assert recipe_name != name and osp.isfile(
            osp.join(REPO, recipe_name)), name
        recipe = Config.fromfile(osp.join(REPO, recipe_name))
        # Everything but the strategy is the recipe's, unchanged (the giant
        # adds activation checkpointing), and the strategy is the strategy
        # file's.
        settings, own = cfg.to_dict(), recipe.to_dict()
        if 'giant' in name:
            assert settings['model']['backbone'].pop('with_cp') is True
        assert set(settings) - set(own) == {'strategy'}, name
        assert {k: v for k, v in settings.items() if k != 'strategy'} == \
            own, name
        assert settings['strategy'] == Config.fromfile(
            osp.join(REPO, strategy_file)).to_dict()['strategy'], name
        kind = strategy_type(cfg)
        if '_fsdp_' in name:
            assert kind == 'FSDPStrategy', name
            policy = cfg.strategy.model_wrapper.auto_wrap_policy['type']
            assert FUNCTIONS.get(policy) is not None, name
            assert cfg.strategy.state_dict_cfg == 'full'
            continue
        assert kind == 'DeepSpeedStrategy', name
        stage = int(name.split('_deepspeed-zero')[1][0])
        assert cfg.strategy.zero_optimization.stage == stage, name
        assert cfg.strategy.bf16.enabled, name
        clip = (recipe.optim_wrapper.get('clip_grad') or {}).get('max_norm')
        if name.startswith('configs/beit3'):
            assert clip == 3.0, name  # the paper's recipe
        deepspeed_optim_wrapper_cfg(cfg)
        assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
        assert cfg.strategy.gradient_clipping == (clip or 0.), name
        if 'giant' in name:
            assert cfg.model.backbone.with_cp, name


def test_separate_ddp_checkpoints_load_with_their_weights(tmp_path):
    """MMSeparateDistributedDataParallel (QLIP stage 2) wraps each trainable
    child in DDP; the saved state dict keeps the plain names that
    mmengine's loader looks for, so the trained weights load."""
    from mmengine.model import MMSeparateDistributedDataParallel
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint

    torch.distributed.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
        world_size=1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 4),
                                    torch.nn.Linear(4, 2))
        wrapped = MMSeparateDistributedDataParallel(model)
        state = wrapped.module.state_dict()
        assert set(state) == {'0.weight', '0.bias', '1.weight', '1.bias'}
        path = str(tmp_path / 'iter_1.pth')
        save_checkpoint(dict(state_dict=state), path)
    finally:
        torch.distributed.destroy_process_group()
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    load_checkpoint(fresh, path, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key])
