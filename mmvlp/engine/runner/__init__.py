"""Training loops and strategy helpers."""
from .fsdp_wrap import multiway_layer_wrap_policy
from .multi_source_loop import (MultiSourceLoader, MultiSourceTrainLoop,
                                build_seeded_dataloader)
from .seeded_data import SeededDataset, SeededSampler, sample_seed

__all__ = [
    'MultiSourceLoader', 'MultiSourceTrainLoop', 'build_seeded_dataloader',
    'SeededDataset', 'SeededSampler', 'sample_seed',
    'multiway_layer_wrap_policy'
]
