"""Version of mmvlp (single source of truth, read by ``setup.py``)."""
__version__ = '0.1.0'


def parse_version_info(version_str: str) -> tuple:
    """Turn ``'0.1.0'`` into ``(0, 1, 0)``; a non-numeric part stays a str.

    Args:
        version_str (str): A version such as ``'0.1.0'`` or ``'0.2.0rc1'``.

    Returns:
        tuple: One entry per dot-separated part.
    """
    return tuple(int(p) if p.isdigit() else p for p in version_str.split('.'))


version_info = parse_version_info(__version__)
