"""Check that the environment holds mmvlp's pinned, tested stack.

Usage:
    python tools/check_env.py [--quiet]
    python tools/check_env.py --mmcv-key        # for tools/install.sh
    python tools/check_env.py --mmcv-matches KEY

Exits 1, naming each problem and its fix, when a pinned package is missing or
has another version, when mmcv lacks its compiled ops (or their CUDA
kernels on a host with a GPU), or when mmvlp does not import. It prints
whether mmcv's ops were compiled with CUDA.

``--mmcv-key`` prints what the mmcv build must match on this host, e.g.
``torch2.14.1-cpu`` or ``torch2.14.1-cu130``: tools/install.sh keeps built
wheels under that name and builds with CUDA ops (``FORCE_CUDA=1``) when the
key names CUDA. ``--mmcv-matches KEY`` exits 0 when the installed mmcv
imports with its ops and was built for KEY (CUDA kernels or not).
"""
import argparse
import importlib
import importlib.metadata as metadata
import os
import os.path as osp
import re
import sys
from typing import Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PIN = re.compile(r'^([A-Za-z0-9_.\-]+)\s*==\s*([\w.]+)$')


def pinned_requirements() -> dict:
    """``{package: version}`` of every ``==`` pin in ``requirements/``."""
    pins = {}
    for name in ('runtime', 'tests', 'tests-nodeps'):
        with open(osp.join(REPO, 'requirements', f'{name}.txt')) as f:
            for line in f:
                match = PIN.match(line.split('#', 1)[0].strip())
                if match:
                    pins[match.group(1)] = match.group(2)
    return pins


def wants_cuda_ops(cuda_available: bool,
                   force_cuda: Optional[str] = None) -> bool:
    """Whether mmcv must be built with CUDA kernels: on hosts with a GPU,
    unless ``FORCE_CUDA`` says otherwise (``'1'``: always, ``'0'``:
    never; the variable mmcv's own build reads)."""
    if force_cuda not in (None, ''):
        if force_cuda not in ('0', '1'):
            raise ValueError(f'FORCE_CUDA must be 0 or 1, got {force_cuda!r}.')
        return force_cuda == '1'
    return cuda_available


def mmcv_wheel_key(torch_version: str, torch_cuda: Optional[str],
                   cuda_ops: bool) -> str:
    """The name an mmcv build is kept under: the torch release it was
    compiled against and ``cpu`` or the CUDA version of its kernels
    (``torch2.14.1-cu130``). A wheel of one key is never installed for
    another: C++ extensions are tied to the torch release, and CPU-only ops
    fail on CUDA tensors (mmdet's RoIAlign, NMS).

    Args:
        torch_version (str): ``torch.__version__`` (``'2.14.1+cu130'``).
        torch_cuda (str, optional): ``torch.version.cuda`` (``'13.0'``;
            None for CPU builds of torch).
        cuda_ops (bool): Build the CUDA kernels (:func:`wants_cuda_ops`).
    """
    release = torch_version.split('+')[0]
    if not cuda_ops:
        return f'torch{release}-cpu'
    if not torch_cuda:
        raise ValueError(
            f'mmcv with CUDA ops needs a CUDA build of torch, but torch '
            f'{torch_version} has none: install torch for your CUDA version, '
            'or set FORCE_CUDA=0 for CPU-only ops.')
    return f'torch{release}-cu{torch_cuda.replace(".", "")}'


def host_mmcv_key() -> str:
    """:func:`mmcv_wheel_key` of this host (its torch, its GPUs and
    ``FORCE_CUDA``)."""
    import torch
    cuda_ops = wants_cuda_ops(torch.cuda.is_available(),
                              os.environ.get('FORCE_CUDA'))
    return mmcv_wheel_key(torch.__version__, torch.version.cuda, cuda_ops)


def mmcv_ops_cuda() -> Optional[str]:
    """The CUDA version mmcv's ops were compiled with, or None for a
    CPU-only build (mmcv reports "not available")."""
    from mmcv.ops import get_compiling_cuda_version
    version = get_compiling_cuda_version()
    return None if version in (None, '', 'not available') else version


def key_matches(key: str, torch_version: str,
                ops_cuda: Optional[str]) -> bool:
    """Whether an mmcv whose ops report ``ops_cuda`` (None: CPU-only),
    running with ``torch_version``, is the build ``key`` asks for."""
    release = torch_version.split('+')[0]
    torch_part, _, flavour = key.rpartition('-')
    if torch_part != f'torch{release}':
        return False
    if flavour == 'cpu':
        return ops_cuda is None
    return ops_cuda is not None and \
        flavour == f'cu{ops_cuda.replace(".", "")}'


def mmcv_matches(key: str) -> bool:
    """The installed mmcv imports with its ops and is the build ``key``
    asks for."""
    try:
        import torch
        return key_matches(key, torch.__version__, mmcv_ops_cuda())
    except Exception:  # noqa: BLE001 -- any import failure means no
        return False


def mmcv_flavour() -> str:
    """``'CUDA 13.0'`` or ``'CPU only'`` for the installed mmcv's ops."""
    cuda = mmcv_ops_cuda()
    return f'CUDA {cuda}' if cuda else 'CPU only'


def problems() -> list:
    found = []
    for package, wanted in pinned_requirements().items():
        try:
            have = metadata.version(package).split('+')[0]
        except metadata.PackageNotFoundError:
            found.append(f'{package} is not installed (want {wanted}): run '
                         '`make install`')
            continue
        if have != wanted:
            found.append(f'{package} {have} is installed but mmvlp is tested '
                         f'with {wanted}: run `make install`')
    for module, fix in (
            ('mmcv.ops', 'mmcv was installed without its compiled ops; '
             'run `make install` (it builds mmcv with MMCV_WITH_OPS=1)'),
            ('mmvlp', 'install mmvlp with `make install` (pip install -e .)'),
            ('sentencepiece', 'run `make install`')):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 -- report any import error
            found.append(f'import {module} failed ({error}): {fix}')
    try:
        import torch
        if torch.cuda.is_available() and mmcv_ops_cuda() is None:
            found.append(
                'this host has a GPU but mmcv\'s ops were compiled without '
                'CUDA (mmdet\'s RoIAlign and NMS fail on CUDA tensors): run '
                '`make install`, which builds mmcv with FORCE_CUDA=1 here')
    except Exception:  # noqa: BLE001 -- reported by the imports above
        pass
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quiet', action='store_true',
                        help='print problems only')
    parser.add_argument('--mmcv-key', action='store_true',
                        help='print the mmcv build this host needs')
    parser.add_argument('--mmcv-matches', metavar='KEY',
                        help='exit 0 when the installed mmcv is that build')
    args = parser.parse_args()
    if args.mmcv_key:
        try:
            print(host_mmcv_key())
        except ValueError as error:
            print(f'  problem: {error}', file=sys.stderr)
            return 1
        return 0
    if args.mmcv_matches:
        return 0 if mmcv_matches(args.mmcv_matches) else 1
    found = problems()
    for problem in found:
        print(f'  problem: {problem}')
    if not found and not args.quiet:
        pins = pinned_requirements()
        print('  ' + ', '.join(f'{k} {v}' for k, v in pins.items()))
        print(f'  mmcv ops: {mmcv_flavour()} (this host: {host_mmcv_key()})')
        print('  environment OK')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
