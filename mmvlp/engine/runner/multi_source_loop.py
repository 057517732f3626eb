"""An iteration-based training loop whose every step carries one batch from
each data source (images, texts, image-text pairs), as BEiT-3 trains."""
from typing import Dict, Iterator, Optional

from mmengine.runner import IterBasedTrainLoop
from torch.utils.data import DataLoader

from mmvlp.registry import LOOPS

SOURCES = ('image', 'text', 'pair')


class MultiSourceLoader:
    """Zip several dataloaders into an endless stream of ``{source: batch}``.

    Each source keeps its own sampler and epoch: when one is exhausted its
    sampler moves to the next epoch (``set_epoch``, so DDP shuffles anew)
    and it restarts, independently of the others. The sequence is a pure
    function of the samplers' seeds, so a resumed run that skips the first
    ``n`` steps sees the same data as an uninterrupted one.

    Args:
        loaders (dict[str, DataLoader]): One dataloader per source.
    """

    def __init__(self, loaders: Dict[str, DataLoader]) -> None:
        self.loaders = loaders
        self.epochs = {name: 0 for name in loaders}
        first = next(iter(loaders.values()))
        self.dataset = first.dataset  # what mmengine's loop inspects
        self.sampler = self  # DistSamplerSeedHook calls set_epoch

    def set_epoch(self, epoch: int) -> None:
        """Start every source at ``epoch``."""
        for name, loader in self.loaders.items():
            self.epochs[name] = epoch
            if hasattr(loader.sampler, 'set_epoch'):
                loader.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return max(len(loader) for loader in self.loaders.values())

    def __iter__(self) -> Iterator[dict]:
        iterators = {name: iter(loader)
                     for name, loader in self.loaders.items()}
        while True:
            batch = {}
            for name, loader in self.loaders.items():
                try:
                    batch[name] = next(iterators[name])
                except StopIteration:
                    self.epochs[name] += 1
                    if hasattr(loader.sampler, 'set_epoch'):
                        loader.sampler.set_epoch(self.epochs[name])
                    iterators[name] = iter(loader)
                    batch[name] = next(iterators[name])
            yield batch


@LOOPS.register_module()
class MultiSourceTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` over a :class:`MultiSourceLoader`.

    ``train_dataloader`` is a dict from source name (``image``, ``text``,
    ``pair``) to an ordinary dataloader config, each with its own batch size
    (the paper: 2048 + 2048 + 2048).

    Args:
        runner (Runner): The runner.
        dataloader (dict): Source name to dataloader config (or object).
        max_iters (int): Training iterations.
        val_begin (int): First iteration that may validate.
        val_interval (int): Validation interval.
        dynamic_intervals (list, optional): As ``IterBasedTrainLoop``.
    """

    def __init__(self,
                 runner,
                 dataloader: Dict[str, dict],
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[list] = None) -> None:
        if not isinstance(dataloader, dict) or not dataloader or \
                not set(dataloader) <= set(SOURCES):
            raise ValueError(
                'MultiSourceTrainLoop needs train_dataloader=dict(image=..., '
                f'text=..., pair=...) with keys among {SOURCES}; got '
                f'{sorted(dataloader) if isinstance(dataloader, dict) else dataloader!r}.')
        diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
        loaders = {
            name: runner.build_dataloader(
                cfg, seed=runner.seed, diff_rank_seed=diff_rank_seed)
            if isinstance(cfg, dict) else cfg
            for name, cfg in dataloader.items()
        }
        super().__init__(runner, MultiSourceLoader(loaders), max_iters,
                         val_begin, val_interval, dynamic_intervals)
