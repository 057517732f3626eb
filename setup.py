"""Install mmvlp. The tested way is `make install` (see README)."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(HERE, 'mmvlp', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt`` without comments."""
    lines = []
    with open(osp.join(HERE, 'requirements', f'{name}.txt')) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                lines.append(line)
    return lines


runtime = read_requirements('runtime')
optional = read_requirements('optional')
tests = read_requirements('tests')

setup(
    name='mmvlp',
    version=read_version(),
    description='BEiT-3 style unified vision-language pretraining for '
    'OpenMMLab 2.x',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=('mmvlp', 'mmvlp.*')),
    python_requires='>=3.9',
    install_requires=runtime,
    extras_require={
        'tests': tests,
        'optional': optional,
        'all': optional + tests,
    },
    license='MIT',
    zip_safe=False,
)
