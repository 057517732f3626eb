"""Count and log the samples that training skipped as bad data."""
from typing import Dict, List, Mapping, Optional

import numpy as np
import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook, LoggerHook

from mmvlp.datasets.skips import SKIP_REASONS, counts_to_dict
from mmvlp.registry import HOOKS

_R = len(SKIP_REASONS)  # columns: the reasons, then samples delivered


def _batch_skips(batch) -> Optional[torch.Tensor]:
    """``(batch size, reasons)`` skip counts of a collated batch, or None
    when its samples carry none."""
    if not isinstance(batch, Mapping) or batch.get('skipped') is None:
        return None
    skipped = batch['skipped']
    if isinstance(skipped, (list, tuple)):  # pseudo_collate
        skipped = torch.stack([torch.as_tensor(s) for s in skipped])
    skipped = torch.as_tensor(skipped)
    if skipped.ndim != 2 or skipped.shape[1] != _R:
        raise ValueError(
            f'skipped has shape {tuple(skipped.shape)}; expected (batch, '
            f'{_R}) as PackFields writes it.')
    return skipped


def _load_skips(dataset) -> Dict[str, int]:
    """``load_skips`` of a dataset or of the dataset it wraps (``.dataset``,
    as mmengine's dataset wrappers and mmvlp's ``SeededDataset`` keep it)."""
    for _ in range(8):
        if dataset is None:
            break
        if getattr(dataset, 'load_skips', None) is not None:
            return dict(dataset.load_skips)
        dataset = getattr(dataset, 'dataset', None)
    return {}


@HOOKS.register_module()
class DataSkipHook(Hook):
    """Sum the bad samples that the datasets skipped, per source and reason.

    Samples carry the skips of their dataloader process (``skipped``, see
    :mod:`mmvlp.datasets.skips`); this hook adds them up per source (the
    keys of a :class:`~mmvlp.engine.MultiSourceTrainLoop` batch, or
    ``train`` for a plain loop), together with the samples seen (delivered
    + skipped). Every ``interval`` iterations and at the end it all-reduces
    the counts across ranks, writes ``train/skipped/<source>`` to the message
    hub (printed by mmengine's logger; skips found while reading annotation
    lists, ``load_skips``, included) and logs the counts by reason when new
    ones came; ``after_train`` logs the final summary. Totals survive
    ``resume`` (message-hub info ``data_skips``).

    Args:
        interval (int, optional): Iterations between reductions; the
            ``LoggerHook`` interval when None.
        max_skip_rate (float, optional): Stop training (``RuntimeError``
            naming the worst source) when a source has skipped more than
            this fraction of the samples it has seen; also checked against
            the annotation-list skips before training. Defaults to 0.01
            (1%). None: never stop.
        min_samples (int): Samples a source must have seen (or records its
            annotation list must hold) before its rate is checked: one bad
            file in the first batch is no trend.
    """
    priority = 'ABOVE_NORMAL'  # before LoggerHook reads the message hub

    def __init__(self,
                 interval: Optional[int] = None,
                 max_skip_rate: Optional[float] = 0.01,
                 min_samples: int = 1000) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}.')
        if max_skip_rate is not None and not 0 <= max_skip_rate < 1:
            raise ValueError('max_skip_rate must be in [0, 1), got '
                             f'{max_skip_rate}.')
        self.interval = interval
        self.max_skip_rate = max_skip_rate
        self.min_samples = min_samples
        self.sources: List[str] = []
        self.load_skips: Dict[str, Dict[str, int]] = {}
        self._pending = np.zeros((0, _R + 1), np.int64)
        self._totals = np.zeros((0, _R + 1), np.int64)

    # -- counts -------------------------------------------------------------
    def totals(self) -> Dict[str, dict]:
        """``{source: {'seen': n, 'skipped': m, 'reasons': {...},
        'at_load': {...}}}`` over all ranks, up to the last reduction
        (``reasons`` are the skips while training, ``at_load`` those of the
        annotation lists)."""
        result = {}
        for source, row in zip(self.sources, self._totals):
            skipped = int(row[:_R].sum())
            result[source] = dict(
                seen=int(row[_R]) + skipped, skipped=skipped,
                reasons=counts_to_dict(row[:_R]),
                at_load=dict(self.load_skips.get(source, {})))
        return result

    def _describe(self) -> str:
        parts = []
        for source, info in self.totals().items():
            if not info['skipped'] and not info['at_load']:
                continue
            text = f'{source}: '
            if info['skipped']:
                rate = info['skipped'] / info['seen']
                text += (f"{info['skipped']} of {info['seen']} samples "
                         f'({rate:.2%}): ' + ', '.join(
                             f'{k} {v}' for k, v in info['reasons'].items()))
            if info['at_load']:
                text += ('; ' if info['skipped'] else '') + 'at load: ' + \
                    ', '.join(f'{k} {v}' for k, v in info['at_load'].items())
            parts.append(text)
        return ' | '.join(parts) if parts else 'none'

    # -- runner events ------------------------------------------------------
    def before_train(self, runner) -> None:
        if self.interval is None:
            self.interval = next((hook.interval for hook in runner.hooks
                                  if isinstance(hook, LoggerHook)), 50)
        loader = runner.train_loop.dataloader
        loaders = getattr(loader, 'loaders', None)  # MultiSourceLoader
        if not isinstance(loaders, dict):
            loaders = dict(train=loader)
        self.sources = list(loaders)
        self.load_skips = {name: _load_skips(ldr.dataset)
                           for name, ldr in loaders.items()}
        self._pending = np.zeros((len(self.sources), _R + 1), np.int64)
        self._totals = np.zeros_like(self._pending)
        # Only a resumed run continues the totals: two runs of one process
        # started in the same second share a message hub (mmengine names it
        # after the timestamp), so a fresh run must not read the old info.
        resumed = runner.message_hub.get_info('data_skips')
        if isinstance(resumed, dict) and runner.iter > 0:
            for i, source in enumerate(self.sources):
                info = resumed.get(source, {})
                reasons = info.get('reasons', {})
                for j, reason in enumerate(SKIP_REASONS):
                    self._totals[i, j] = reasons.get(reason, 0)
                self._totals[i, _R] = info.get('seen', 0) - info.get(
                    'skipped', 0)
        if any(self.load_skips.values()):
            runner.logger.warning(
                'Records skipped while reading the annotation lists: ' +
                self._describe())
        if self.max_skip_rate is not None:
            rates = {}
            for name, ldr in loaders.items():
                skipped = sum(self.load_skips[name].values())
                try:
                    kept = len(ldr.dataset)
                except TypeError:  # a stream of unknown length
                    continue
                if skipped and kept + skipped >= max(self.min_samples, 1):
                    rates[name] = skipped / (kept + skipped)
            worst = max(rates, key=rates.get, default=None)
            if worst is not None and rates[worst] > self.max_skip_rate:
                self._stop(worst, rates[worst], self.load_skips[worst],
                           'its annotation list')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if isinstance(data_batch, Mapping) and 'inputs' not in data_batch \
                and set(data_batch) <= set(self.sources):
            parts = data_batch
        else:
            parts = {self.sources[0]: data_batch} if self.sources else {}
        for source, batch in parts.items():
            skipped = _batch_skips(batch)
            if skipped is None:
                continue
            row = self._pending[self.sources.index(source)]
            row[:_R] += skipped.sum(0).numpy().astype(np.int64)
            row[_R] += skipped.shape[0]
        if self.every_n_train_iters(runner, self.interval) or \
                self.is_last_train_iter(runner):
            self._reduce(runner)

    def after_train(self, runner) -> None:
        self._reduce(runner)
        runner.logger.info(f'Data skipped in training: {self._describe()}')

    # -- helpers ------------------------------------------------------------
    def _reduce(self, runner) -> None:
        """Sum the pending counts of all ranks into the totals, publish and
        check them (every rank calls it at the same iterations)."""
        pending = torch.from_numpy(self._pending.copy())
        all_reduce(pending)
        self._pending[:] = 0
        self._totals += pending.numpy()
        totals = self.totals()
        for source, info in totals.items():
            runner.message_hub.update_scalar(
                f'train/skipped/{source}',
                info['skipped'] + sum(info['at_load'].values()))
        runner.message_hub.update_info(
            'data_skips',
            {source: dict(seen=info['seen'], skipped=info['skipped'],
                          reasons=info['reasons'])
             for source, info in totals.items()})
        if pending[:, :_R].sum() > 0:
            runner.logger.info(f'Skipped data so far: {self._describe()}')
        if self.max_skip_rate is None:
            return
        rates = {source: info['skipped'] / info['seen']
                 for source, info in totals.items()
                 if info['seen'] >= max(self.min_samples, 1)}
        if rates:
            worst = max(rates, key=rates.get)
            if rates[worst] > self.max_skip_rate:
                self._stop(worst, rates[worst], totals[worst]['reasons'],
                           f"the {totals[worst]['seen']} samples it has seen")

    def _stop(self, source: str, rate: float, reasons: dict,
              what: str) -> None:
        raise RuntimeError(
            f'Data source {source!r} skipped {rate:.2%} of {what} as bad '
            f'data ({", ".join(f"{k} {v}" for k, v in reasons.items())}), '
            f'more than max_skip_rate={self.max_skip_rate:.2%}. Fix or '
            'remove the bad files (the first ones of each reason are logged '
            'with their path), or raise DataSkipHook.max_skip_rate.')
