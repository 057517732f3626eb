"""Check that the environment holds mmvlp's pinned, tested stack.

Usage: python tools/check_env.py [--quiet]

Exits 1, naming each problem and its fix, when a pinned package is missing or
has another version, when mmcv lacks its compiled ops, or when mmvlp does not
import.
"""
import argparse
import importlib
import importlib.metadata as metadata
import os.path as osp
import re
import sys

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
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quiet', action='store_true',
                        help='print problems only')
    args = parser.parse_args()
    found = problems()
    for problem in found:
        print(f'  problem: {problem}')
    if not found and not args.quiet:
        pins = pinned_requirements()
        print('  ' + ', '.join(f'{k} {v}' for k, v in pins.items()))
        print('  environment OK')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
