"""Architecture tables: named sizes or explicit dicts."""
from typing import Dict, Union

ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')


def resolve_arch(arch: Union[str, dict], table: Dict[str, dict],
                 model: str) -> dict:
    """Settings of ``arch``: a name from ``table`` or an explicit dict.

    Args:
        arch (str | dict): A name in ``table`` or a dict with at least
            ``embed_dims``, ``num_layers``, ``num_heads`` and
            ``feedforward_channels``.
        table (dict): Named architectures of the model.
        model (str): The model's name, for error messages.

    Returns:
        dict: A copy of the settings.

    Raises:
        ValueError: Unknown name, missing keys or another type.
    """
    if isinstance(arch, str):
        if arch.lower() not in table:
            raise ValueError(f'Unknown {model} arch {arch!r}; choose one of '
                             f'{sorted(table)} or pass a dict with '
                             f'{sorted(ARCH_KEYS)}.')
        return dict(table[arch.lower()])
    if isinstance(arch, dict):
        missing = set(ARCH_KEYS) - set(arch)
        if missing:
            raise ValueError(f'A {model} arch dict needs the keys '
                             f'{sorted(ARCH_KEYS)}; missing {sorted(missing)}.')
        return dict(arch)
    raise ValueError(f'{model} arch must be one of {sorted(table)} or a dict, '
                     f'got {type(arch).__name__}.')
