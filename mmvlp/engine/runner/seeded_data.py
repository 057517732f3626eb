"""Per-sample random streams, so that training data is a pure function of
the seed and can be resumed without replaying it.

mmvlp's transforms (``TwoViewCrop``, ``BlockwiseMaskGenerator``,
``TextMasking``) and those of mmcv/mmpretrain (``RandomFlip``,
``ColorJitter``) draw from numpy's global generator. mmengine seeds it once per
process: in the main process with the run's seed, in each dataloader worker
through ``worker_init_fn`` with ``seed + rank * num_workers + worker_id``. The
augmentation of a sample therefore depends on everything drawn before it in
the same process, which makes it depend on ``num_workers``, on whether the
workers persist, on the order in which sources are loaded, and on the batches
before it. The image and pair sources (same pipeline, same worker seeds) even
draw identical crops and masks for the first sample of each worker (seen with
the demo config and ``num_workers=2``). A resumed run can
only reproduce it by loading and discarding every earlier batch, which is
what mmengine's ``IterBasedTrainLoop`` does: hours at the recipes' scale.

Here every sample is transformed under generators seeded with
``sample_seed(seed, source, epoch, index)`` (python ``random``, numpy's
global generator and torch's CPU generator; their previous states are
restored afterwards). The stream is then the same for any ``num_workers``
and world size, and :class:`SeededSampler` can start in the middle of an
epoch without loading what comes before.
"""
import contextlib
import itertools
import random
from typing import Iterator, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ['mix_seed', 'sample_seed', 'seeded_rngs', 'SeededSampler', 'SeededDataset']

_UINT64 = (1 << 64) - 1


def mix_seed(seed: int, *parts: int) -> int:
    """A well-mixed 32-bit seed from the run's seed and some integers
    (numpy ``SeedSequence``): one derivation for every seed in a run.

    Args:
        seed (int): The run's seed (taken modulo ``2**64``).
        *parts (int): What the seed is for (source, epoch, index, ...).

    Returns:
        int: A seed in ``[0, 2**32)``.
    """
    entropy = [int(seed) & _UINT64] + [int(part) for part in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def sample_seed(seed: int, stream: int, epoch: int, index: int) -> int:
    """The 32-bit seed of one sample's transforms.

    Args:
        seed (int): The run's seed.
        stream (int): The data source (0, 1, 2 for image, text, pair).
        epoch (int): The source's epoch.
        index (int): The sample's index in its dataset.

    Returns:
        int: A seed in ``[0, 2**32)``, well mixed (numpy ``SeedSequence``).
    """
    return mix_seed(seed, stream, epoch, index)


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python's, numpy's and torch's (CPU) global generators inside a
    ``with`` block and restore their states after it.

    Args:
        seed (int): A seed in ``[0, 2**32)``.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class SeededSampler(Sampler):
    """Pair each index of a sampler with its sample's seed.

    Yields ``(index, sample_seed(seed, stream, epoch, index))`` for
    :class:`SeededDataset`. Seeds depend on the dataset index (not on the
    rank or position), so they do not change with the world size; indices
    that ``DefaultSampler`` repeats to pad the last ranks get the same
    augmentation twice.

    Args:
        sampler (Sampler): The wrapped sampler (``DefaultSampler``: it owns
            shuffling, the rank split and the epoch's order).
        seed (int): The run's seed.
        stream (int): The data source's number.
    """

    def __init__(self, sampler: Sampler, seed: int, stream: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.stream = stream
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the seeds and of the wrapped sampler."""
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def skip_next(self, count: int) -> None:
        """Let the next pass over the sampler start at its ``count``-th
        index (the indices before are not yielded, nothing is loaded)."""
        if count < 0:
            raise ValueError(f'count must be >= 0, got {count}.')
        self._skip = count

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        skip, self._skip = self._skip, 0
        epoch = self.epoch
        for index in itertools.islice(iter(self.sampler), skip, None):
            yield index, sample_seed(self.seed, self.stream, epoch, index)

    def __len__(self) -> int:
        return len(self.sampler)


class SeededDataset(Dataset):
    """Run a dataset's ``__getitem__`` under its sample's seed.

    ``dataset[(index, seed)]`` loads ``index`` inside :func:`seeded_rngs`;
    ``dataset[index]`` loads it as the wrapped dataset would. Other
    attributes (``metainfo``, ``pipeline``, ...) are the wrapped dataset's.

    Args:
        dataset (Dataset): A map-style dataset.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Union[int, Tuple[int, int]]):
        if isinstance(key, tuple):
            index, seed = key
            with seeded_rngs(seed):
                return self.dataset[index]
        return self.dataset[key]

    def __getattr__(self, name: str):
        # Dunder lookups (e.g. the DataLoader's ``__getitems__`` probe,
        # pickling) must not reach the wrapped dataset.
        if name.startswith('__') or name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.dataset!r})'
