"""Training loops."""
from .multi_source_loop import MultiSourceLoader, MultiSourceTrainLoop

__all__ = ['MultiSourceLoader', 'MultiSourceTrainLoop']
