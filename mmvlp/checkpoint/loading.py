"""Loading with the fit check of :mod:`.checkpoint_fit`: one loader that
counts what loaded, the checks that tools and models open around their
loads, mmengine's hooks, and the tools' error handling.

* :func:`load_model_weights` -- a file into a model, checked (inferencers,
  feature extraction, ``tokenizer_checkpoint``, ``init_cfg`` on mmvlp
  models, ``tools/tokenize_images.py``);
* :func:`checked_loading` / :func:`checked_runner_loading` -- check
  mmengine's own loads (``load_from``, resume) into a model inside a block
  (``tools/test.py``, ``tools/train.py``);
* :func:`install_checked_loading` -- routes mmengine's ``load_state_dict``
  and ``PretrainedInit`` through the check (applied at import);
* :func:`exit_on_load_error` -- a checkpoint error ends a tool with one
  message and exit status 1 (a traceback with ``--debug`` or
  ``MMVLP_DEBUG=1``).
"""
import contextlib
import os
import re
import sys
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from mmvlp.compat.torch_load import LOAD_OBSERVERS, UnsafeCheckpointError
from .fit import (PURPOSES, FitReport, _effective, _unwrap,
                  allow_partial_loading, essential_parts,
                  model_keys, model_shapes)
from .inspection import (CheckpointError, CheckpointFileError,
                         CheckpointFitError, CheckpointSummary,
                         check_checkpoint_file, summarize_checkpoint)

__all__ = [
    'load_state_dict_checked', 'load_model_weights', 'read_checkpoint',
    'weights_of', 'checked_loading', 'checked_runner_loading',
    'note_official_mapping', 'note_loaded_file', 'install_checked_loading',
    'add_load_arguments', 'exit_on_load_error', 'DEBUG_ENV'
]

DEBUG_ENV = 'MMVLP_DEBUG'


_SIZE = re.compile(r'size mismatch for ([^:]+): copying a param with shape '
                   r'torch\.Size\(\[([^\]]*)\]\) from checkpoint, the shape '
                   r'in current model is torch\.Size\(\[([^\]]*)\]\)')
_COPY = re.compile(r'While copying the parameter named "([^"]+)"')


def _shape(text: str) -> tuple:
    return tuple(int(x) for x in text.split(',') if x.strip())


def _load(module: nn.Module, state_dict: dict
          ) -> Tuple[List[str], List[str], Dict[str, Tuple[tuple, tuple]]]:
    """Load as mmengine's ``load_state_dict`` does (each module's
    ``_load_from_state_dict`` and post hooks, state dict copied) and return
    ``(missing, unexpected, mismatched)``."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    missing, unexpected, errors = [], [], []
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = dict(state_dict)

    def load(mod, local, prefix=''):
        if is_model_wrapper(mod) or isinstance(mod, BaseTTAModel):
            mod = mod.module
        local_meta = {} if metadata is None else metadata.get(prefix[:-1],
                                                              {})
        mod._load_from_state_dict(local, prefix, local_meta, True, missing,
                                  unexpected, errors)
        for name, child in mod._modules.items():
            if child is not None:
                child_prefix = prefix + name + '.'
                load(child, {k: v for k, v in local.items()
                             if k.startswith(child_prefix)}, child_prefix)
        incompatible = torch.nn.modules.module._IncompatibleKeys(
            missing, unexpected)
        for hook in getattr(mod, '_load_state_dict_post_hooks',
                            {}).values():
            hook(mod, incompatible)

    load(module, state_dict)
    mismatched = {}
    for error in errors:
        match = _SIZE.search(error)
        if match:
            mismatched[match.group(1)] = (_shape(match.group(2)),
                                          _shape(match.group(3)))
            continue
        match = _COPY.search(error)
        if match:
            mismatched[match.group(1)] = ((), ())
            continue
        raise RuntimeError(error)
    missing = [k for k in missing if 'num_batches_tracked' not in k]
    return missing, unexpected, mismatched


class _Guard:
    """An active check on loads into ``model``."""

    def __init__(self, model: nn.Module, purpose: str,
                 strict: Optional[bool], source: Optional[str]) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f'purpose must be one of {PURPOSES}, got '
                             f'{purpose!r}.')
        self.model, self.purpose = _unwrap(model), purpose
        self.strict, self.source = strict, source
        self.file: Optional[CheckpointSummary] = None
        self.hints: List[str] = []
        self.reports: List[FitReport] = []


_GUARDS: List[_Guard] = []
_LAST_FILE: List[Optional[CheckpointSummary]] = [None]


def _guard_for(module: nn.Module) -> Optional[_Guard]:
    target = _unwrap(module)
    for guard in reversed(_GUARDS):
        if guard.model is target:
            return guard
    return None


@contextlib.contextmanager
def checked_loading(model: nn.Module, purpose: str,
                    strict: Optional[bool] = None,
                    source: Optional[str] = None) -> Iterator[_Guard]:
    """Check every mmengine load into ``model`` inside the block.

    ``load_from`` / resume of the runners, ``load_checkpoint`` and
    ``init_cfg=dict(type='Pretrained')`` of ``model`` go through mmengine's
    ``load_state_dict``, which mmvlp replaces (:func:`install_checked_loading`)
    by :func:`load_state_dict_checked` while a check is active for that
    model. Loads into other modules are left alone.

    Args:
        model (nn.Module): The model (wrappers are looked through).
        purpose (str): One of :data:`PURPOSES`.
        strict (bool, optional): None: the purpose's rules; True: every key;
            False: load what fits (logged).
        source (str, optional): The file, for messages.
    """
    guard = _Guard(model, purpose, strict, source)
    _LAST_FILE[0] = None  # (a file loaded before the block is not this one)
    _GUARDS.append(guard)
    try:
        yield guard
    finally:
        _GUARDS.remove(guard)


@contextlib.contextmanager
def checked_runner_loading(runner, purpose: str,
                           allow_partial: bool = False) -> Iterator[None]:
    """Check the loads of a runner's model (``load_from``, resume) inside
    the block: ``runner.test()`` / ``runner.train()`` of the tools.

    The config's ``load_strict`` (None by default; True: every key; False:
    load what fits) and ``allow_partial`` (``--allow-partial``) set the
    strictness.
    """
    cfg = runner.cfg
    with allow_partial_loading(allow_partial), checked_loading(
            runner.model, purpose, cfg.get('load_strict'),
            cfg.get('load_from')):
        yield


def note_loaded_file(path, checkpoint) -> None:
    """Remember what a checkpoint file holds while a check is active (the
    safe checkpoint loaders call it after each load)."""
    if _GUARDS:
        _LAST_FILE[0] = summarize_checkpoint(checkpoint, path)


def note_official_mapping(model: nn.Module, mapping) -> bool:
    """Hand an official BEiT-3 mapping's report to the active check of
    ``model``; False when none is active (the mapping logs it itself)."""
    guard = _guard_for(model)
    if guard is None:
        return False
    guard.hints.extend(mapping.problems())
    return True


def load_state_dict_checked(module: nn.Module, state_dict: dict,
                            purpose: str = 'test',
                            strict: Optional[bool] = None,
                            source: Optional[str] = None,
                            file: Optional[CheckpointSummary] = None
                            ) -> FitReport:
    """Load ``state_dict`` into ``module`` and check the fit.

    The load runs every module's ``_load_from_state_dict`` (so official
    BEiT-3 files convert and position tables resize on the way) and never
    raises for a shape: tensors of another shape are counted. An active
    :func:`checked_loading` for ``module`` supplies purpose, strictness,
    source and what the file holds.

    Returns:
        FitReport: The checked report (logged in one line).

    Raises:
        CheckpointFitError: The purpose's rules refuse the load.
    """
    module = _unwrap(module)
    guard = _guard_for(module)
    if guard is not None:
        purpose = guard.purpose
        strict = guard.strict if guard.strict is not None else strict
        source = source or guard.source
        file = file or guard.file or _LAST_FILE[0]
    hints_before = len(guard.hints) if guard else 0
    try:
        missing, unexpected, mismatched = _load(module, state_dict)
    except CheckpointError:
        raise
    except ValueError as error:  # e.g. an official file of another size
        raise CheckpointFitError(_with_file(str(error), source, file)) \
            from error
    essential, heads = essential_parts(module)
    report = FitReport(type(module).__name__, purpose, model_keys(module),
                       missing, mismatched, unexpected, essential, heads,
                       source or (file.path if file else None), file,
                       strict=_effective(strict),
                       shapes=model_shapes(module))
    if guard is not None:
        report.hints = guard.hints[hints_before:]
        guard.reports.append(report)
    return report.check()


def _with_file(message: str, source, file) -> str:
    if file is None:
        return message
    return f'{message}\n  The file {source or ""} holds {file.describe()}.'


def weights_of(checkpoint: dict) -> dict:
    """The state dict of a loaded checkpoint: under ``state_dict``
    (mmengine), ``module`` (DeepSpeed model states) or ``model`` (official
    files, timm), nested up to three deep, else the file itself; DDP / FSDP
    / compile wrapper names are removed from the keys."""
    from .inspection import strip_wrappers, unwrap_weights
    state, _ = unwrap_weights(checkpoint)
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        return dict(checkpoint)
    return dict(zip(strip_wrappers(list(state)), state.values()))


def read_checkpoint(checkpoint: str, map_location='cpu',
                    what: str = 'checkpoint'):
    """``(checkpoint object, summary)`` of a file, loaded safely; files
    that are not checkpoints raise :class:`CheckpointFileError`."""
    from mmengine.runner.checkpoint import _load_checkpoint
    check_checkpoint_file(checkpoint, what)
    obj = _load_checkpoint(checkpoint, map_location=map_location)
    return obj, summarize_checkpoint(obj, checkpoint)


def load_model_weights(model: nn.Module,
                       checkpoint: str,
                       purpose: str = 'test',
                       strict: Optional[bool] = None,
                       prefix: Optional[str] = None,
                       map_location='cpu',
                       what: str = 'checkpoint') -> FitReport:
    """Load a checkpoint file into ``model`` with the fit check: the one
    call for code that loads weights (inferencers, feature extraction,
    tokenizers, tools).

    Args:
        model (nn.Module): The model.
        checkpoint (str): Path or URL. mmengine checkpoints (weights under
            ``state_dict``) and plain state dicts load; official BEiT-3 files
            load into the task models (converted on the way).
        purpose (str): One of :data:`PURPOSES`. Defaults to ``'test'``.
        strict (bool, optional): None: the purpose's rules; True: every
            key; False: what fits (logged).
        prefix (str, optional): Load only the file's keys under this prefix
            (stripped), as ``init_cfg``'s ``prefix``.
        map_location: As :func:`torch.load`.
        what (str): How messages name the file.

    Returns:
        FitReport: What loaded.

    Raises:
        CheckpointFileError: Not a checkpoint (missing, empty, text, ...).
        CheckpointFitError: It does not fit (see the module docstring).
    """
    obj, file = read_checkpoint(checkpoint, map_location, what)
    if not isinstance(obj, dict):
        raise CheckpointFileError(
            f'The {what} {checkpoint} is {file.description}: '
            f'{file.use}.')
    state = weights_of(obj)
    if prefix:
        sub = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix)}
        if not sub:
            raise CheckpointFitError(
                f'No key of {checkpoint} starts with prefix={prefix!r}.\n'
                f'  The file holds {file.describe()}.\n  Fix: set prefix to '
                "one of the file's prefixes, or None for the whole file.")
        state = sub
    with checked_loading(model, purpose, strict, checkpoint) as guard:
        guard.file = file
        return load_state_dict_checked(model, state)


# ------------------------------------------------------------ mmengine hooks
_ORIGINAL: Dict[str, object] = {}


def _mmengine_load_state_dict(module, state_dict, strict=False, logger=None):
    """mmengine's ``load_state_dict``, checked while a check is active."""
    guard = _guard_for(module)
    if guard is None:
        return _ORIGINAL['load_state_dict'](module, state_dict, strict,
                                            logger)
    load_state_dict_checked(module, state_dict,
                            strict=True if strict else None)


def _is_mmvlp(module: nn.Module) -> bool:
    return type(module).__module__.startswith('mmvlp.')


def _pretrained_init(self, checkpoint, prefix=None, map_location='cpu',
                     strict=None):
    _ORIGINAL['init'](self, checkpoint, prefix=prefix,
                      map_location=map_location)
    self.strict = strict


def _pretrained_call(self, module):
    """``PretrainedInit`` on an mmvlp model: :func:`load_model_weights`
    with the model's ``pretrained_purpose`` (``'init'`` by default)."""
    if not _is_mmvlp(module):
        return _ORIGINAL['call'](self, module)
    from mmengine.model.weight_init import update_init_info
    print_log(f'{type(module).__name__}: load '
              f'{self.prefix + " of " if self.prefix else ""}'
              f'{self.checkpoint}', logger='current')
    load_model_weights(module, self.checkpoint,
                       purpose=getattr(module, 'pretrained_purpose', 'init'),
                       strict=getattr(self, 'strict', None),
                       prefix=self.prefix, map_location=self.map_location)
    if hasattr(module, '_params_init_info'):
        update_init_info(module, init_info=self._get_init_info())


def install_checked_loading() -> None:
    """Route mmengine's ``load_state_dict`` through the fit check (active
    only inside :func:`checked_loading`) and let ``init_cfg=dict(
    type='Pretrained', ..., strict=...)`` check loads into mmvlp models.
    Idempotent."""
    import mmengine.runner as runner_pkg
    if note_loaded_file not in LOAD_OBSERVERS:
        LOAD_OBSERVERS.append(note_loaded_file)
    from mmengine.model.weight_init import PretrainedInit
    from mmengine.runner import checkpoint
    if 'load_state_dict' not in _ORIGINAL:
        _ORIGINAL['load_state_dict'] = checkpoint.load_state_dict
        _ORIGINAL['init'] = PretrainedInit.__init__
        _ORIGINAL['call'] = PretrainedInit.__call__
    checkpoint.load_state_dict = _mmengine_load_state_dict
    runner_pkg.load_state_dict = _mmengine_load_state_dict
    PretrainedInit.__init__ = _pretrained_init
    PretrainedInit.__call__ = _pretrained_call


# ------------------------------------------------------------ tools
def add_load_arguments(parser, partial: bool = True) -> None:
    """``--allow-partial`` (unless ``partial`` is False) and ``--debug`` for
    a tool's parser."""
    if partial:
        parser.add_argument(
            '--allow-partial', action='store_true',
            help='load what fits from a checkpoint that does not fit the '
            'model (the parts that do not fit keep their initial values; '
            'logged). By default such a checkpoint stops with a message.')
    parser.add_argument(
        '--debug', action='store_true',
        help=f'show tracebacks of checkpoint errors (also {DEBUG_ENV}=1)')


def debug_enabled(flag: bool = False) -> bool:
    return bool(flag) or os.environ.get(DEBUG_ENV, '').lower() not in (
        '', '0', 'false', 'no')


@contextlib.contextmanager
def exit_on_load_error(debug: bool = False) -> Iterator[None]:
    """Turn checkpoint errors into one message on stderr and exit status 1
    (a traceback only with ``debug`` or ``MMVLP_DEBUG=1``)."""
    try:
        yield
    except (CheckpointError, UnsafeCheckpointError) as error:
        if debug_enabled(debug):
            raise
        sys.stdout.flush()
        print(f'error: {error}', file=sys.stderr, flush=True)
        raise SystemExit(1) from None
