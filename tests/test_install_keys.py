"""The mmcv build a host needs (tools/check_env.py, used by
tools/install.sh): CUDA ops on GPU hosts, wheels kept per torch release and
CUDA version, a wheel of another build never accepted. Fake torch versions
stand in for GPU hosts."""
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def _check_env():
    spec = importlib.util.spec_from_file_location(
        'check_env', osp.join(REPO, 'tools', 'check_env.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_env = _check_env()


@pytest.mark.parametrize('available,force,wanted', [
    (True, None, True), (False, None, False), (True, '0', False),
    (False, '1', True), (True, '', True)])
def test_cuda_ops_on_gpu_hosts_unless_forced(available, force, wanted):
    assert check_env.wants_cuda_ops(available, force) is wanted


def test_force_cuda_must_be_0_or_1():
    with pytest.raises(ValueError, match='FORCE_CUDA'):
        check_env.wants_cuda_ops(True, 'yes')


@pytest.mark.parametrize('torch_version,cuda,ops,key', [
    ('2.14.1+cu130', '13.0', True, 'torch2.14.1-cu130'),
    ('2.14.1+cu130', '13.0', False, 'torch2.14.1-cpu'),
    ('2.14.1+cu126', '12.6', True, 'torch2.14.1-cu126'),
    ('2.14.1+cpu', None, False, 'torch2.14.1-cpu'),
    ('2.13.0', '12.8', True, 'torch2.13.0-cu128')])
def test_wheel_key_names_torch_and_cuda(torch_version, cuda, ops, key):
    assert check_env.mmcv_wheel_key(torch_version, cuda, ops) == key


def test_cuda_ops_need_a_cuda_torch():
    with pytest.raises(ValueError, match='CUDA build of torch'):
        check_env.mmcv_wheel_key('2.14.1+cpu', None, True)


@pytest.mark.parametrize('key,torch_version,ops_cuda,matches', [
    # The wheel in the shared wheel dir is a CPU build: fine on a CPU host,
    # never on a GPU host.
    ('torch2.14.1-cpu', '2.14.1+cu130', None, True),
    ('torch2.14.1-cu130', '2.14.1+cu130', None, False),
    # A CUDA build on a CPU host is refused too (the reverse).
    ('torch2.14.1-cpu', '2.14.1+cu130', '13.0', False),
    ('torch2.14.1-cu130', '2.14.1+cu130', '13.0', True),
    # Another CUDA version or torch release.
    ('torch2.14.1-cu130', '2.14.1+cu130', '12.6', False),
    ('torch2.14.1-cpu', '2.13.0', None, False)])
def test_installed_build_must_match_the_key(key, torch_version, ops_cuda,
                                            matches):
    assert check_env.key_matches(key, torch_version, ops_cuda) is matches


def test_this_host_and_its_mmcv():
    """On this (CPU-only) machine: the key is a CPU one and the installed
    mmcv matches it; check_env prints the ops' flavour."""
    import torch
    key = check_env.host_mmcv_key()
    if torch.cuda.is_available():
        assert '-cu' in key
    else:
        assert key == f'torch{torch.__version__.split("+")[0]}-cpu'
    tool = osp.join(REPO, 'tools', 'check_env.py')
    run = subprocess.run([sys.executable, tool, '--mmcv-key'],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == key
    run = subprocess.run([sys.executable, tool, '--mmcv-matches', key],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    other = key.replace('-cpu', '-cu130') if key.endswith('-cpu') else \
        key.rsplit('-', 1)[0] + '-cpu'
    run = subprocess.run([sys.executable, tool, '--mmcv-matches', other],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1


def test_install_sh_keys_its_wheel_cache():
    """install.sh builds with FORCE_CUDA from the key and keeps and looks
    up wheels under the key."""
    script = open(osp.join(REPO, 'tools', 'install.sh')).read()
    assert 'check_env.py" --mmcv-key' in script
    assert 'FORCE_CUDA="$MMCV_CUDA"' in script
    assert '-w "$WHEEL_CACHE/$MMCV_KEY"' in script
    assert 'install_mmcv_from "$WHEEL_CACHE/$MMCV_KEY"' in script
    assert '--mmcv-matches "$MMCV_KEY"' in script
    assert 'install_mmcv_from "$WHEEL_CACHE";' not in script
