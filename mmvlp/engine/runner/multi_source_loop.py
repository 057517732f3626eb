"""An iteration-based training loop whose every step carries one batch from
each data source (images, texts, image-text pairs), as BEiT-3 trains."""
import copy
import random
from typing import Dict, Iterator, Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from mmengine.runner import IterBasedTrainLoop
from torch.utils.data import BatchSampler, DataLoader, IterableDataset

from mmvlp.registry import LOOPS
from .seeded_data import SeededDataset, SeededSampler, mix_seed

SOURCES = ('image', 'text', 'pair')


class MultiSourceLoader:
    """Zip several dataloaders into an endless stream of ``{source: batch}``.

    Each source keeps its own sampler and epoch: when one is exhausted its
    sampler moves to the next epoch (``set_epoch``, so DDP shuffles anew)
    and it restarts, independently of the others.

    :meth:`seek` makes the next pass start at a given step. A source whose
    batches come from a :class:`SeededSampler` (see
    :func:`build_seeded_dataloader`) jumps there: its epoch is
    ``step // len(loader)`` and its sampler skips the indices of the
    ``step % len(loader)`` batches before, without loading them. Its data is
    then exactly that of an uninterrupted run, because each sample's
    augmentation depends only on the seed, the source, the epoch and the
    index. An endless stream with a ``seek`` method
    (``WebShardDataset(repeat=True)``) skips the records of those batches
    without decoding them. Other sources (finite iterable datasets, custom
    batch samplers) load and discard the batches before ``step``, as
    mmengine does.

    Args:
        loaders (dict[str, DataLoader]): One dataloader per source.
    """

    def __init__(self, loaders: Dict[str, DataLoader]) -> None:
        self.loaders = loaders
        self.epochs = {name: 0 for name in loaders}
        first = next(iter(loaders.values()))
        self.dataset = first.dataset  # what mmengine's loop inspects
        self.sampler = self  # DistSamplerSeedHook calls set_epoch
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        """Start every source at ``epoch``."""
        for name in self.loaders:
            self._set_source_epoch(name, epoch)

    def _set_source_epoch(self, name: str, epoch: int) -> None:
        self.epochs[name] = epoch
        seeded = self._seeded_sampler(name)
        sampler = seeded or self.loaders[name].sampler
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)
        elif hasattr(self.loaders[name].dataset, 'set_epoch'):
            # A stream (iterable dataset, e.g. WebShardDataset) has no
            # sampler: it shuffles itself, per epoch.
            self.loaders[name].dataset.set_epoch(epoch)

    def _seeded_sampler(self, name: str) -> Optional[SeededSampler]:
        batch_sampler = getattr(self.loaders[name], 'batch_sampler', None)
        sampler = getattr(batch_sampler, 'sampler', None)
        if type(batch_sampler) is BatchSampler and isinstance(
                sampler, SeededSampler):
            return sampler
        return None

    def _seekable_stream(self, name: str) -> bool:
        loader = self.loaders[name]
        return (isinstance(loader.dataset, IterableDataset)
                and hasattr(loader.dataset, 'seek')
                and getattr(loader.dataset, 'repeat', False)
                and loader.batch_size is not None)

    def seek(self, step: int) -> None:
        """Make the next ``iter()`` start at ``step`` (from the epochs set
        by :meth:`set_epoch`), e.g. the iteration a run resumes from."""
        if step < 0:
            raise ValueError(f'step must be >= 0, got {step}.')
        self._start = step

    def __len__(self) -> int:
        """Batches of the longest source of known length (0 when none is
        known, e.g. streams without ``num_samples``); mmengine's hooks ask."""
        lengths = []
        for loader in self.loaders.values():
            try:
                lengths.append(len(loader))
            except TypeError:  # an iterable dataset of unknown length
                continue
        return max(lengths, default=0)

    def _stream(self, name: str, start: int) -> Iterator:
        """Endless batches of one source from step ``start``."""
        loader = self.loaders[name]
        seeded = self._seeded_sampler(name)
        replay = start
        if seeded is not None and start:
            epochs, batches = divmod(start, len(loader))
            self._set_source_epoch(name, self.epochs[name] + epochs)
            seeded.skip_next(batches * loader.batch_sampler.batch_size)
            replay = 0
        elif start and self._seekable_stream(name):
            # An endless stream (WebShardDataset(repeat=True)) skips the
            # records of the first `start` batches without decoding them.
            loader.dataset.seek(start, loader.batch_size)
            replay = 0
        while True:
            empty = True
            for batch in loader:
                empty = False
                if replay:
                    replay -= 1
                    continue
                yield batch
            if empty:
                raise ValueError(
                    f'The {name!r} source yields no batch: its dataset is '
                    'empty or smaller than its batch_size with drop_last; '
                    'check its data paths.')
            self._set_source_epoch(name, self.epochs[name] + 1)

    def __iter__(self) -> Iterator[dict]:
        start, self._start = self._start, 0
        return self._zip(start)

    def _zip(self, start: int) -> Iterator[dict]:
        # Generators: the sources position themselves at the first batch,
        # after the epoch hooks have run.
        streams = {name: self._stream(name, start) for name in self.loaders}
        while True:
            yield {name: next(stream) for name, stream in streams.items()}


def build_seeded_dataloader(runner, dataloader: dict, stream: int,
                            seed: int, diff_rank_seed: bool = False):
    """``runner.build_dataloader`` with per-sample seeds where possible.

    A map-style dataset batched by an ordinary ``BatchSampler`` is wrapped in
    :class:`SeededDataset` and its sampler in :class:`SeededSampler`, so its
    augmentations are a pure function of ``(seed, stream, epoch, index)``
    (see :mod:`mmvlp.engine.runner.seeded_data`). Iterable datasets and
    custom batch samplers are built as mmengine builds them.

    Each source's sampler shuffles with its own seed (derived from ``seed``
    and ``stream``, the same on every rank) unless its config sets one:
    mmengine would give every source the run's seed, so sources of equal
    length (e.g. the images and the captions of one pair list) would be
    shuffled into the same order.

    Args:
        runner (Runner): The runner.
        dataloader (dict): A dataloader config.
        stream (int): The source's number.
        seed (int): The run's seed.
        diff_rank_seed (bool): As ``Runner.build_dataloader``.

    Returns:
        DataLoader: The dataloader.
    """
    cfg = copy.copy(dataloader)
    sampler = cfg.get('sampler')
    if isinstance(sampler, dict) and seed is not None and not diff_rank_seed:
        cfg['sampler'] = dict(sampler)
        cfg['sampler'].setdefault('seed', source_seed(seed, stream))
    dataset = cfg['dataset']
    if isinstance(dataset, dict):
        dataset = DATASETS.build(dataset)
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
    seedable = (not isinstance(dataset, IterableDataset)
                and cfg.get('batch_sampler') is None)
    cfg['dataset'] = SeededDataset(dataset) if seedable else dataset
    loader = runner.build_dataloader(cfg, seed=seed,
                                     diff_rank_seed=diff_rank_seed)
    if seedable and type(loader.batch_sampler) is BatchSampler:
        loader.batch_sampler.sampler = SeededSampler(
            loader.batch_sampler.sampler, seed, stream)
    return loader


def source_seed(seed: int, stream: int) -> int:
    """The shuffling seed of one source (31 bits, the same on every rank)."""
    return mix_seed(seed, stream) >> 1


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one training step's randomness on one rank."""
    return mix_seed(seed, rank, step)


def scalars_to_host(outputs):
    """The scalar tensors of a ``train_step`` output dict as Python numbers,
    read from the device with one transfer; other values are kept.

    Args:
        outputs (dict | Any): What ``train_step`` returned (log variables).

    Returns:
        The same mapping with floats in place of scalar tensors.
    """
    if not isinstance(outputs, dict):
        return outputs
    keys = [k for k, v in outputs.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1]
    if not keys:
        return outputs
    values = torch.stack([outputs[k].detach().reshape(()).float()
                          for k in keys]).tolist()
    converted = type(outputs)(outputs)
    converted.update(zip(keys, values))
    return converted


@LOOPS.register_module()
class MultiSourceTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` over a :class:`MultiSourceLoader`.

    ``train_dataloader`` is a dict from source name (``image``, ``text``,
    ``pair``) to an ordinary dataloader config, each with its own batch size
    (the paper: 2048 + 2048 + 2048).

    A run is a pure function of ``randomness.seed``, and resuming from a
    checkpoint continues it exactly:

    * data: each sample is transformed under its own seed
      (:func:`build_seeded_dataloader`), so a resumed run seeks each source
      to the step it stopped at instead of loading and discarding every
      earlier batch (mmengine's ``IterBasedTrainLoop`` does the latter, which
      is also the only way it can restore the augmentations);
    * model: with ``seed_steps`` every step's torch, numpy and python
      generators are seeded with ``(seed, rank, iteration)`` before the
      forward pass. mmengine seeds them once per run and does not save their
      states, so drop path (0.1 in the recipes) drew different masks after a
      resume (in a 6-iteration tiny run resumed at 3, the losses of
      iterations 4-6 differed by up to 0.07 and the final weights by
      4e-3). Different ranks draw different masks, as BEiT's own code does
      (seed + rank).

    Set ``randomness.seed`` (the runtime default is 0): with ``seed=None``
    mmengine picks a new seed per run and builds the samplers before it
    reads the checkpoint's. ``randomness.diff_rank_seed=True`` makes
    mmengine's samplers draw a fresh shuffling seed per run, so the data
    order is not resumable then.

    Args:
        runner (Runner): The runner.
        dataloader (dict): Source name to dataloader config (or object).
        max_iters (int): Training iterations.
        val_begin (int): First iteration that may validate.
        val_interval (int): Validation interval.
        dynamic_intervals (list, optional): As ``IterBasedTrainLoop``.
        seed_steps (bool): Seed every step's randomness from the seed, the
            rank and the iteration. Defaults to True.
    """

    def __init__(self,
                 runner,
                 dataloader: Dict[str, dict],
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[list] = None,
                 seed_steps: bool = True) -> None:
        if not isinstance(dataloader, dict) or not dataloader or \
                not set(dataloader) <= set(SOURCES):
            raise ValueError(
                'MultiSourceTrainLoop needs train_dataloader=dict(image=..., '
                f'text=..., pair=...) with keys among {SOURCES}; got '
                f'{sorted(dataloader) if isinstance(dataloader, dict) else dataloader!r}.')
        diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
        loaders = {
            name: build_seeded_dataloader(
                runner, cfg, SOURCES.index(name), seed=runner.seed,
                diff_rank_seed=diff_rank_seed)
            if isinstance(cfg, dict) else cfg
            for name, cfg in dataloader.items()
        }
        self.seed_steps = seed_steps
        super().__init__(runner, MultiSourceLoader(loaders), max_iters,
                         val_begin, val_interval, dynamic_intervals)

    def run(self) -> torch.nn.Module:
        """Launch training; a resumed run seeks the data (see the class)."""
        self.runner.call_hook('before_train')
        # In iteration-based training the whole run is one big epoch.
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(f'Resuming the data at iteration {self._iter}: sources '
                      'with seeded samplers seek there, endless shard '
                      'streams skip the records before it undecoded, others '
                      'load and discard the batches before it.',
                      logger='current')
        self.dataloader.seek(self._iter)
        self.dataloader_iterator = iter(self.dataloader)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, data_batch: dict) -> None:
        """One step, under its own seed when ``seed_steps``. The logged
        values reach the hooks as numbers read from the device in one
        transfer (mmengine's hooks read every loss and accuracy with its
        own ``.item()``, a host sync each)."""
        if self.seed_steps:
            seed = step_seed(self.runner.seed, get_rank(), self._iter)
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
        self.runner.call_hook(
            'before_train_iter', batch_idx=self._iter, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        self.runner.call_hook(
            'after_train_iter', batch_idx=self._iter, data_batch=data_batch,
            outputs=scalars_to_host(outputs))
        self._iter += 1
