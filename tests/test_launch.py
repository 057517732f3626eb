"""Launchers on CPU-only hosts: the shared setup of tools/train.py and
tools/test.py (mmvlp/runtime/launch.py), tools/dist_test.sh with two gloo
processes and tools/slurm_train.sh through a stand-in srun."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers.demo_data import make_demo_with_spm
from helpers.ports import free_port
from mmengine.config import Config
from mmengine.dist import is_distributed
from mmengine.registry import init_default_scope
from test_pretrain_runner import _cfg

from mmvlp.registry import MODELS
from mmvlp.runtime import launch
from mmvlp.runtime.launch import (cpu_model_wrapper_cfg, finish_launch,
                                  init_cpu_process_group, limit_cpu_threads,
                                  setup_launch)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
cpu_only = pytest.mark.skipif(launch.accelerator_available(),
                              reason='the CPU path of a CPU-only host')


def _cpu_env(**extra):
    """A subprocess environment that sees no GPU, whatever the host."""
    return dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES='',
                OMP_NUM_THREADS='1', **extra)


def test_cpu_model_wrapper_cfg():
    cfg = Config(dict(find_unused_parameters=True))
    cpu_model_wrapper_cfg(cfg)
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', device_ids=None,
        broadcast_buffers=False, find_unused_parameters=True)
    # A DDP wrapper config without devices gets device_ids=None ...
    cfg = Config(dict(model_wrapper_cfg=dict(
        type='MMDistributedDataParallel', broadcast_buffers=True)))
    cpu_model_wrapper_cfg(cfg)
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.broadcast_buffers is True
    # ... one that names CUDA devices is refused ...
    cfg = Config(dict(model_wrapper_cfg=dict(device_ids=[0])))
    with pytest.raises(ValueError, match='drop device_ids'):
        cpu_model_wrapper_cfg(cfg)
    # ... and other wrappers are left alone.
    cfg = Config(dict(model_wrapper_cfg=dict(
        type='MMFullyShardedDataParallel')))
    cpu_model_wrapper_cfg(cfg)
    assert 'device_ids' not in cfg.model_wrapper_cfg


@cpu_only
def test_setup_launch_single_process_changes_nothing():
    # AmpOptimWrapper stays: mmvlp's trains in bf16 on CPUs that can
    # (tests/test_amp.py).
    wrapper = dict(type='AmpOptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    cfg = Config(dict(launcher='none', optim_wrapper=wrapper))
    setup_launch(cfg)
    assert cfg.optim_wrapper == wrapper
    assert 'model_wrapper_cfg' not in cfg
    assert not is_distributed()
    with pytest.raises(ValueError, match='launcher must be one of'):
        setup_launch(Config(dict(launcher='torchrun')))


def test_launcher_without_its_environment(monkeypatch):
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match='tools/dist_train.sh'):
        init_cpu_process_group('pytorch')
    with pytest.raises(ValueError, match='launcher must be one of'):
        init_cpu_process_group('none')


def test_finish_launch_destroys_the_group(tmp_path):
    assert finish_launch() is False  # no group: nothing to do
    torch.distributed.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    assert finish_launch() is True
    assert not torch.distributed.is_initialized()


def test_exit_after_launch_flushes_and_keeps_the_status(tmp_path):
    """``os._exit`` skips finalisation but not what was written: buffered
    stdout and a logging file handler reach their files, and the status is
    the one given."""
    log = tmp_path / 'run.log'
    script = (
        'import logging, sys\n'
        'from mmvlp.utils import exit_after_launch\n'
        f'handler = logging.FileHandler({str(log)!r})\n'
        'logger = logging.getLogger("run")\n'
        'logger.addHandler(handler)\n'
        'logger.warning("logged before exit")\n'
        'sys.stdout.write("printed without newline")\n'
        'exit_after_launch(3)\n'
        'print("never reached")\n')
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    # (deepspeed, imported with mmvlp, may print a line before it)
    assert result.stdout.endswith('printed without newline')
    assert 'never reached' not in result.stdout
    assert log.read_text() == 'logged before exit\n'


def test_limit_cpu_threads(monkeypatch):
    threads = torch.get_num_threads()
    try:
        monkeypatch.setenv('OMP_NUM_THREADS', '3')
        torch.set_num_threads(2)
        assert limit_cpu_threads() == 2  # the user's setting is kept
        monkeypatch.delenv('OMP_NUM_THREADS')
        assert limit_cpu_threads() == 1
        assert os.environ['OMP_NUM_THREADS'] == '1'
    finally:
        torch.set_num_threads(threads)


def test_scripts_print_usage():
    for script, args in (('dist_train.sh', 1), ('dist_test.sh', 2),
                         ('slurm_train.sh', 3), ('slurm_test.sh', 3)):
        result = subprocess.run(
            ['bash', osp.join(REPO, 'tools', script)] + ['x'] * args,
            capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.startswith('usage:'), script


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_with_spm(tmp_path_factory.mktemp('launch'),
                              num_train=8, num_val=4)


def test_dist_test_sh_two_cpu_processes(demo_root, tmp_path):
    config = osp.join(REPO, 'configs', 'demo',
                      'vqkd-color_vit-tiny-p8_demo-tokenizer.py')
    cfg = Config.fromfile(config)
    init_default_scope('mmvlp')
    # The tokenizer at initialisation: what is tested is the launch, the
    # distributed evaluation and the gathering of the metric.
    checkpoint = str(tmp_path / 'init.pth')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()),
               checkpoint)
    options = ['--cfg-options',
               f'test_dataloader.dataset.data_root={demo_root}',
               'test_dataloader.batch_size=1', 'test_dataloader.num_workers=0',
               'test_dataloader.persistent_workers=False',
               f'work_dir={tmp_path}']
    result = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_test.sh'), config, checkpoint,
         '2'] + options,
        cwd=REPO, env=_cpu_env(PORT=str(free_port())), capture_output=True,
        text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert 'uses gloo' in output
    # Rank 0 prints the metrics of all 4 held-out images, gathered from both.
    assert 'codebook/tokens: 144' in output, output[-3000:]


def test_slurm_train_sh_through_a_stand_in_srun(demo_root, tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    log = tmp_path / 'srun_args.txt'
    # srun of one task: records its options, sets what Slurm sets, runs the
    # command; scontrol names the master node.
    (bin_dir / 'srun').write_text(
        '#!/usr/bin/env bash\n'
        f'printf "%s\\n" "$@" > {log}\n'
        'while [ $# -gt 0 ]; do case "$1" in\n'
        '  -p) shift 2 ;; -*) shift ;; *) break ;; esac; done\n'
        'export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 '
        'SLURM_NODELIST=node0\n'
        'exec "$@"\n')
    (bin_dir / 'scontrol').write_text('#!/usr/bin/env bash\necho 127.0.0.1\n')
    for tool in ('srun', 'scontrol'):
        (bin_dir / tool).chmod(0o755)
    cfg = _cfg(demo_root, tmp_path / 'unused', max_iters=1)
    config = str(tmp_path / 'tiny_pretrain.py')
    cfg.dump(config)
    work_dir = tmp_path / 'work'
    env = _cpu_env(GPUS='1', GPUS_PER_NODE='1', CPUS_PER_TASK='1', GRES='',
                   SRUN_ARGS='--exclusive', MASTER_PORT=str(free_port()),
                   PATH=f'{bin_dir}:{os.environ["PATH"]}')
    result = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'slurm_train.sh'), 'cpu', 'tiny',
         config, str(work_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    args = log.read_text().splitlines()
    assert args[:6] == ['-p', 'cpu', '--job-name=tiny', '--ntasks=1',
                        '--ntasks-per-node=1', '--cpus-per-task=1']
    assert '--exclusive' in args and not any('--gres' in a for a in args)
    assert args[-2:] == [f'--work-dir={work_dir}', '--launcher=slurm']
    assert 'uses gloo' in output
    assert osp.isfile(work_dir / 'iter_1.pth')
