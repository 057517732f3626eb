"""Does a checkpoint fit the model it is loaded into? Count what loaded,
stop when the result would be meaningless, report the rest in one line.

mmengine loads with ``strict=False``: a file that holds none of the model's
keys, or weights of another size, logs a long warning and the run goes on
with random weights. mmvlp checks every load it controls (``tools/test.py``,
``tools/train.py`` with ``load_from`` / ``--resume``,
``init_cfg=dict(type='Pretrained')`` on mmvlp models, the inferencers,
``BEiT3Pretrain(tokenizer_checkpoint=...)``, ``tools/tokenize_images.py``,
the converters) the same way:

1. the load runs as mmengine's, collecting missing keys, unexpected keys and
   tensors of another shape (:func:`~.checkpoint_loading.
   load_state_dict_checked`);
2. a :class:`FitReport` counts the loaded tensors against the model's, per
   *essential part*. Models declare their parts as class attributes:
   ``essential_parts`` (module prefixes without which no use is meaningful,
   e.g. the backbone of a task model, the encoder and codebook of a
   tokenizer) and ``head_parts`` (what evaluation needs and fine-tuning
   starts fresh, e.g. a task head); other models get ``backbone.`` as
   essential and their other top-level modules as heads;
3. the *purpose* of the load decides what is fatal:

   ========== ==================================================
   purpose    stops when
   ========== ==================================================
   ``test``   an essential or head part is not loaded completely
   ``encode`` an essential part is not loaded completely
   ``train``  an essential part gets nothing (heads may start
   ``init``   fresh); tensors of another size in essential parts
   ``resume`` any tensor of the model is not loaded
   ========== ==================================================

   and in every case when nothing loads, or the file has more or fewer
   layers than the model. The error (:class:`CheckpointFitError`) is one
   message: what the file holds (:func:`~.checkpoint_inspect.
   summarize_checkpoint`), what the model expected, and the likely fix
   (converter, prefix, config size; for official BEiT-3 files the
   mapping's own report). Loads that are expected to be partial report the
   parts that start fresh in one log line.

``strict=True`` requires every key; ``strict=False`` (``--allow-partial``
on the tools, ``strict=False`` in an ``init_cfg``, ``load_strict=False`` in
a config) loads what fits and logs what would have stopped the run.
"""
import contextlib
import logging
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .inspection import (CONVERTER, CheckpointFitError,
                         CheckpointSummary, collapse_keys)

__all__ = [
    'PURPOSES', 'FitReport', 'model_keys', 'model_shapes',
    'essential_parts', 'compare_state_dict', 'allow_partial_loading'
]

PURPOSES = ('test', 'encode', 'train', 'init', 'resume')
_PURPOSE_WORDS = dict(test='to evaluate or run it', encode='to encode',
                      train='to train from it', init='to initialise it',
                      resume='to resume training')
#: Model state that checkpoints need not hold.
_SKIPPED = ('data_preprocessor.', )
_ALLOW_PARTIAL = [False]


def _unwrap(module: nn.Module) -> nn.Module:
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(module) or isinstance(module, BaseTTAModel):
        module = module.module
    return module


def _in(key: str, prefix: str) -> bool:
    if prefix.endswith('.'):
        return key.startswith(prefix)
    return key == prefix or key.startswith(prefix + '.')


def model_keys(model: nn.Module) -> List[str]:
    """The state-dict keys a checkpoint should give (persistent
    parameters and buffers; not the data preprocessor's, not BN counters).
    """
    return [k for k in model.state_dict()
            if not k.startswith(_SKIPPED) and 'num_batches_tracked' not in k]


def model_shapes(model: nn.Module) -> Dict[str, tuple]:
    """Key -> shape of :func:`model_keys`."""
    state = model.state_dict()
    return {k: tuple(state[k].shape) for k in model_keys(model)}


def essential_parts(model: nn.Module
                    ) -> Tuple[Dict[str, str], Dict[str, str]]:
    """``(essential, heads)``: prefix -> description of the model's parts
    that must load for any use / for evaluation.

    Read from the class attributes ``essential_parts`` and ``head_parts``;
    without them, ``backbone.`` is essential and every other top-level
    module with weights is a head. Parts without keys in the model are left
    out.
    """
    keys = model_keys(model)
    essential = getattr(type(model), 'essential_parts', None)
    heads = getattr(type(model), 'head_parts', None)
    tops = sorted({k.split('.')[0] for k in keys})
    if essential is None:
        essential = {'backbone.': 'the backbone'} if 'backbone' in tops \
            else {}
    if heads is None:
        heads = {f'{t}.' if any(k.startswith(t + '.') for k in keys) else t:
                 t for t in tops if not any(_in(t + '.', p) or _in(t, p)
                                            for p in essential)}

    def present(parts):
        return {p: d for p, d in parts.items() if any(_in(k, p)
                                                      for k in keys)}

    return present(dict(essential)), present(dict(heads))


@dataclass
class FitReport:
    """How a checkpoint's weights fit a model.

    Attributes:
        model (str): The model's class name.
        purpose (str): One of :data:`PURPOSES`.
        keys (list): The model's keys (see :func:`model_keys`).
        missing (list): Model keys the file did not give.
        mismatched (dict): Model key -> (file shape, model shape).
        unexpected (list): File keys the model has no place for.
        essential (dict): Essential parts, prefix -> description.
        heads (dict): Head parts, prefix -> description.
        source (str, optional): The file.
        file (CheckpointSummary, optional): What the file holds.
        hints (list): Fixes known from the load (e.g. the official mapping's
            report).
        strict (bool, optional): None: the rules of ``purpose``; True:
            every key; False: nothing is fatal.
        shapes_fatal (bool): Any tensor of another shape is fatal (not only
            in essential parts when training).
        shapes (dict): Model key -> shape (for the prefix hint).
    """
    model: str
    purpose: str
    keys: List[str]
    missing: List[str] = field(default_factory=list)
    mismatched: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)
    unexpected: List[str] = field(default_factory=list)
    essential: Dict[str, str] = field(default_factory=dict)
    heads: Dict[str, str] = field(default_factory=dict)
    source: Optional[str] = None
    file: Optional[CheckpointSummary] = None
    hints: List[str] = field(default_factory=list)
    strict: Optional[bool] = None
    shapes_fatal: bool = False
    shapes: Dict[str, tuple] = field(default_factory=dict)

    @property
    def not_loaded(self) -> List[str]:
        own = set(self.keys)
        return sorted((set(self.missing) | set(self.mismatched)) & own)

    @property
    def loaded(self) -> int:
        return len(self.keys) - len(self.not_loaded)

    def part_status(self, prefix: str) -> Tuple[int, int]:
        """``(loaded, total)`` tensors of a part."""
        keys = [k for k in self.keys if _in(k, prefix)]
        lost = set(self.not_loaded)
        return sum(k not in lost for k in keys), len(keys)

    def depth_mismatch(self) -> Optional[str]:
        """``'the file has 12 layers, the model 4'`` when the file's layers
        (``layers.N`` / ``blocks.N`` under a prefix where both have some)
        go deeper than the model's, or stop earlier."""
        pattern = re.compile(r'^(.*?(?:layers|blocks)\.)(\d+)\.')

        def depths(keys):
            found: Dict[str, int] = {}
            for key in keys:
                match = pattern.match(key)
                if match:
                    found[match.group(1)] = max(found.get(match.group(1), -1),
                                                int(match.group(2)))
            return found

        own = depths(self.keys)
        lost = set(self.not_loaded)
        given = depths(list(self.unexpected) + [k for k in self.keys
                                                if k not in lost])
        for name in sorted(set(own) & set(given)):
            if own[name] != given[name]:
                kind = name.rstrip('.').split('.')[-1]
                return (f'the file has {given[name] + 1} {kind}, the model '
                        f'{own[name] + 1}')
        return None

    def fatal(self, strict: Optional[bool] = ...) -> List[str]:
        """Why the load is refused (empty: it may go on), under ``strict``
        (default: the report's own)."""
        strict = self.strict if strict is ... else strict
        if strict is False or not self.keys:
            return []
        reasons = []
        if strict:
            if self.not_loaded or self.unexpected:
                reasons.append(
                    f'strict loading: {len(self.not_loaded)} model tensors '
                    f'not loaded, {len(self.unexpected)} file tensors not '
                    'used')
            return reasons
        if self.loaded == 0:
            reasons.append(f'nothing in the file fits (0 of '
                           f'{len(self.keys)} tensors would load)')
        shaped = [k for k in self.mismatched
                  if self.shapes_fatal or
                  self.purpose not in ('train', 'init') or
                  any(_in(k, p) for p in self.essential)]
        if shaped:
            reasons.append(f'{len(shaped)} tensors have another shape '
                           f'({_shapes(self.mismatched, shaped)})')
        depth = self.depth_mismatch()
        if depth:
            reasons.append(depth)
        if self.loaded == 0:
            return reasons
        if self.purpose == 'resume':
            lost = self.not_loaded
            if lost:
                reasons.append(f'{len(lost)} of {len(self.keys)} tensors '
                               f'would stay at their initial value '
                               f'({collapse_keys(lost, self.keys)})')
            return reasons
        complete = dict(self.essential) if self.purpose in (
            'test', 'encode') else {}
        if self.purpose == 'test':
            complete.update(self.heads)
        shaped = set(self.mismatched)
        for prefix, what in complete.items():
            loaded, total = self.part_status(prefix)
            lost = [k for k in self.not_loaded if _in(k, prefix)]
            if lost and set(lost) <= shaped:
                continue  # reported as tensors of another shape
            if loaded == 0:
                reasons.append(f'{what} ({_star(prefix)}) would stay at its '
                               'initial value')
            elif loaded < total:
                reasons.append(f'{what} ({_star(prefix)}): {total - loaded} '
                               f'of {total} tensors would stay at their '
                               f'initial value ('
                               f'{collapse_keys(lost, self.keys, 4)})')
        if self.purpose in ('train', 'init'):
            for prefix, what in self.essential.items():
                lost = [k for k in self.not_loaded if _in(k, prefix)]
                if self.part_status(prefix)[0] == 0 and not (
                        set(lost) <= shaped):
                    reasons.append(f'{what} ({_star(prefix)}) would stay at '
                                   'its initial value')
        return reasons

    def expected(self) -> str:
        """What the model expects, by part."""
        parts = []
        for prefix, what in list(self.essential.items()) + list(
                self.heads.items()):
            count = self.part_status(prefix)[1]
            parts.append(f'{_star(prefix)} ({count}' + (
                f', {what})' if what != prefix.rstrip('.') else ')'))
        rest = [k for k in self.keys if not any(
            _in(k, p) for p in list(self.essential) + list(self.heads))]
        if rest:
            parts.append(collapse_keys(rest, self.keys, 4))
        return (f'{self.model} expects {len(self.keys)} tensors: '
                f'{", ".join(parts)}')

    def fixes(self) -> List[str]:
        """Likely fixes, most specific first."""
        out = list(dict.fromkeys(self.hints))
        fresh = [d for p, d in self.heads.items()
                 if self.part_status(p)[0] == 0]
        if self.purpose == 'test' and fresh and len(fresh) == len(
                self.heads) and all(self.part_status(p)[0] for p in
                                    self.essential):
            pretrained = self.file is not None and self.file.kind in (
                'mmvlp-pretrain', 'official-beit3', 'beit3-backbone')
            missing = " and ".join(fresh)
            out.append(
                f'evaluate a checkpoint fine-tuned for this {self.model} '
                f'(the file has no weights for {missing}); the file itself '
                'is for fine-tuning' if pretrained else
                f'load a checkpoint with {missing} (as this config\'s '
                'training writes)')
        if self.file is not None:
            prefix = _prefix_hint(self.file, self.shapes, self.loaded)
            if prefix:
                out.append(prefix)
        size = _size_hint(self) if (self.mismatched or
                                    self.depth_mismatch()) else None
        if size:
            out.append(size)
        if self.file is not None and self.file.use and not out:
            out.append(self.file.use)
        if not out:
            out.append('check that the checkpoint belongs to this config')
        return out

    def message(self) -> str:
        """The error message (a few lines)."""
        source = self.source or 'The checkpoint'
        lines = [f'{source} does not fit this {self.model} '
                 f'({_PURPOSE_WORDS.get(self.purpose, self.purpose)}): '
                 + '; '.join(self.fatal()) + '.']
        if self.file is not None:
            lines.append(f'  The file holds {self.file.describe()}.')
        lines.append(f'  {self.expected()}.')
        lines.append('  Fix: ' + ' Or: '.join(self.fixes()) + '.')
        lines.append('  (To load what fits anyway: --allow-partial on the '
                     'tools, or strict=False in the config.)')
        return '\n'.join(lines)

    def line(self) -> str:
        """The one-line report of a load that goes on."""
        name = osp.basename(self.source) if self.source else 'checkpoint'
        text = f'{self.model} <- {name}: loaded {self.loaded}/' \
            f'{len(self.keys)} tensors'
        lost = self.not_loaded
        if lost:
            text += f'; start fresh: {collapse_keys(lost, self.keys)}'
            shaped = [k for k in lost if k in self.mismatched]
            if shaped:
                text += (f' (another shape: '
                         f'{_shapes(self.mismatched, shaped, 2)})')
        if self.unexpected:
            text += (f'; not used from the file: '
                     f'{collapse_keys(self.unexpected, self.unexpected, 6)}')
        return text

    def check(self) -> 'FitReport':
        """Raise :class:`CheckpointFitError` when the load is refused; log
        the one-line report otherwise."""
        reasons = self.fatal()
        if reasons:
            raise CheckpointFitError(self.message())
        if self.strict is False:
            would = self.fatal(strict=None)
            if would:
                print_log(f'{self.line()}. Partial load allowed '
                          f'(--allow-partial / strict=False); it would have '
                          f'stopped: {"; ".join(would)}.', logger='current',
                          level=logging.WARNING)
                return self
        partial = [p for p in self.essential if
                   self.part_status(p)[0] < self.part_status(p)[1]]
        level = logging.WARNING if partial else logging.INFO
        print_log(self.line() + '.', logger='current', level=level)
        return self


def _star(prefix: str) -> str:
    return prefix + '*' if prefix.endswith('.') else prefix


def _shapes(mismatched: dict, keys: List[str], limit: int = 3) -> str:
    shown = [f'{k}: file {tuple(mismatched[k][0])}, model '
             f'{tuple(mismatched[k][1])}' for k in sorted(keys)[:limit]]
    return '; '.join(shown) + (' ...' if len(keys) > limit else '')


def _prefix_hint(file: CheckpointSummary, shapes: Dict[str, tuple],
                 loaded: int) -> Optional[str]:
    """A prefix change that would load many more tensors (same names and
    shapes), as a fix."""
    own, keys = shapes, list(shapes)
    names = list(file.weights)
    if not names:
        return None
    strips = {''}
    for name in names:
        parts = name.split('.')
        strips.update('.'.join(parts[:d]) + '.' for d in (1, 2)
                      if len(parts) > d)
    adds = {''} | {k.split('.')[0] + '.' for k in keys if '.' in k}
    best, choice = loaded, None
    for strip in strips:
        for add in adds:
            if strip == add:
                continue
            count = sum(own.get(add + n[len(strip):]) == file.weights[n]
                        for n in names if n.startswith(strip))
            if count > best:
                best, choice = count, (strip, add)
    if choice is None or best < max(1, 2 * loaded):
        return None
    strip, add = choice
    if add == 'backbone.' and not strip:
        return (f"the file's keys lack this model's 'backbone.' prefix ("
                f'{best} tensors would load with it): it is a bare backbone; '
                "load it through the backbone's init_cfg (model.backbone."
                "init_cfg=dict(type='Pretrained', checkpoint=FILE)) or "
                f'convert the official file with --prefix backbone. '
                f'({CONVERTER})')
    if add == 'backbone.':
        return (f"the file's '{strip}' keys are this model's backbone ("
                f'{best} tensors would load): set prefix=\'{strip}\' in '
                "the backbone's init_cfg (model.backbone.init_cfg=dict("
                f"type='Pretrained', checkpoint=FILE, prefix='{strip}'))")
    if not add:
        return (f"the file's keys carry the prefix '{strip}' ({best} "
                "tensors would load without it): load it with init_cfg="
                f"dict(type='Pretrained', checkpoint=FILE, prefix='{strip}')")
    return (f"the file's '{strip}' keys are this model's '{add}' keys "
            f'({best} tensors would load): rename them, or load them with '
            f"init_cfg=dict(type='Pretrained', checkpoint=FILE, "
            f"prefix='{strip}') on the '{add.rstrip('.')}' module")


def _size_hint(report: FitReport) -> Optional[str]:
    """The sizes of the file and the model, read from their shapes."""
    facts = []
    for key, (got, want) in report.mismatched.items():
        if key.endswith('patch_embed.proj.weight') and len(got) == 4:
            if got[0] != want[0]:
                facts.append(f'width {got[0]} (the model {want[0]})')
            if got[2:] != want[2:]:
                facts.append(f'patch {got[2]} (the model {want[2]})')
            break
    else:
        widths = [(g[-1], w[-1]) for k, (g, w) in report.mismatched.items()
                  if k.endswith('norm1.vision.weight') or k.endswith(
                      'norm1.weight') and len(g) == 1]
        if widths:
            facts.append(f'width {widths[0][0]} (the model {widths[0][1]})')
    depth = report.depth_mismatch()
    if depth:
        count, rest = depth[len('the file has '):].split(', the model ')
        facts.append(f'{count} (the model {rest})')
    if not facts and report.mismatched:
        key = sorted(report.mismatched)[0]
        got, want = report.mismatched[key]
        facts.append(f'{key} {tuple(got)} (the model {tuple(want)})')
    if not facts:
        return None
    official = report.file is not None and report.file.kind == \
        'official-beit3'
    tail = (f'; {CONVERTER} prints the config that fits the file'
            if official else '')
    return ('the file is of another size: ' + ', '.join(facts) +
            f'; use the config of the file\'s size (arch, patch_size, '
            f'number of classes / answers){tail}')


def _effective(strict: Optional[bool]) -> Optional[bool]:
    if _ALLOW_PARTIAL[0]:
        return False
    return strict


@contextlib.contextmanager
def allow_partial_loading(enabled: bool = True) -> Iterator[None]:
    """Inside the block every checked load behaves as ``strict=False``
    (what ``--allow-partial`` of the tools does)."""
    before = _ALLOW_PARTIAL[0]
    _ALLOW_PARTIAL[0] = bool(enabled) or before
    if enabled:
        print_log('--allow-partial: checkpoints load what fits; parts that '
                  'do not fit keep their initial values.', logger='current',
                  level=logging.WARNING)
    try:
        yield
    finally:
        _ALLOW_PARTIAL[0] = before


def compare_state_dict(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                       purpose: str = 'test',
                       strict: Optional[bool] = None,
                       source: Optional[str] = None,
                       file: Optional[CheckpointSummary] = None) -> FitReport:
    """A :class:`FitReport` of ``state_dict`` against ``model`` from names
    and shapes only (no load hooks run, nothing is loaded); call
    :meth:`FitReport.check` to apply it.

    Args:
        model (nn.Module): The model (may be on the meta device).
        state_dict (dict): Names -> tensors, as the model would get them.
        purpose, strict, source, file: As :func:`~.checkpoint_loading.
            load_state_dict_checked`.
    """
    own = {k: v for k, v in model.state_dict().items()}
    keys = model_keys(model)
    missing = [k for k in keys if k not in state_dict]
    mismatched = {k: (tuple(state_dict[k].shape), tuple(own[k].shape))
                  for k in keys if k in state_dict and
                  tuple(state_dict[k].shape) != tuple(own[k].shape)}
    unexpected = [k for k in state_dict if k not in own]
    essential, heads = essential_parts(model)
    return FitReport(type(model).__name__, purpose, keys, missing,
                     mismatched, unexpected, essential, heads, source, file,
                     strict=_effective(strict), shapes=model_shapes(model))
