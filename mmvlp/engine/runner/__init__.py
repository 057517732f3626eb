"""Training loops."""
from .multi_source_loop import (MultiSourceLoader, MultiSourceTrainLoop,
                                build_seeded_dataloader)
from .seeded_data import SeededDataset, SeededSampler, sample_seed

__all__ = [
    'MultiSourceLoader', 'MultiSourceTrainLoop', 'build_seeded_dataloader',
    'SeededDataset', 'SeededSampler', 'sample_seed'
]
