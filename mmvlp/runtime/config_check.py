"""Check a config before anything is built: unknown types, BEiT-3 settings
that contradict each other across the model and the data pipelines.

mmengine finds a wrong ``type`` only when it builds that part (an unknown
transform: when the first dataloader worker starts) and then says only
``'X is not in the mmvlp::transform registry'``; a text pipeline longer
than the backbone's position table fails at the first training step with
a shape error. :func:`check_config` finds these up front and names the
field, the value and what would be valid. ``tools/train.py`` and
``tools/test.py`` call it before building the runner.
"""
import difflib
import inspect
from importlib import import_module
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import mmengine.registry as roots
import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import Registry

__all__ = ['ConfigError', 'check_config']

# The registry that builds the dicts under a key, where the key tells.
_KEY_REGISTRY = {
    'model': roots.MODELS,
    'data_preprocessor': roots.MODELS,
    'pipeline': roots.TRANSFORMS,
    'transforms': roots.TRANSFORMS,
    'dataset': roots.DATASETS,
    'datasets': roots.DATASETS,
    'sampler': roots.DATA_SAMPLERS,
    'batch_sampler': roots.DATA_SAMPLERS,
    'collate_fn': roots.FUNCTIONS,
    'init_cfg': roots.WEIGHT_INITIALIZERS,
    'optim_wrapper': roots.OPTIM_WRAPPERS,
    'optimizer': roots.OPTIMIZERS,
    'param_scheduler': roots.PARAM_SCHEDULERS,
    'train_cfg': roots.LOOPS,
    'val_cfg': roots.LOOPS,
    'test_cfg': roots.LOOPS,
    'default_hooks': roots.HOOKS,
    'custom_hooks': roots.HOOKS,
    'val_evaluator': roots.METRICS,
    'test_evaluator': roots.METRICS,
    'visualizer': roots.VISUALIZERS,
    'vis_backends': roots.VISBACKENDS,
    'log_processor': roots.LOG_PROCESSORS,
    'model_wrapper_cfg': roots.MODEL_WRAPPERS,
    'strategy': roots.STRATEGIES,
}
# Top-level entries that the runner builds (other top-level names are
# config variables, checked where they are used).
_TOP_LEVEL = tuple(_KEY_REGISTRY) + ('train_dataloader', 'val_dataloader',
                                     'test_dataloader')
# ``type`` entries that OpenMMLab reads without a registry (mmcv's
# ``batched_nms`` takes the function name, RoI layers are looked up in
# ``mmcv.ops``).
_NOT_REGISTRY_KEYS = ('nms', 'roi_layer')
_ALL_ROOTS = (roots.MODELS, roots.TASK_UTILS, roots.WEIGHT_INITIALIZERS,
              roots.TRANSFORMS, roots.DATASETS, roots.DATA_SAMPLERS,
              roots.FUNCTIONS, roots.HOOKS, roots.LOOPS, roots.OPTIMIZERS,
              roots.OPTIM_WRAPPERS, roots.OPTIM_WRAPPER_CONSTRUCTORS,
              roots.PARAM_SCHEDULERS, roots.METRICS, roots.EVALUATOR,
              roots.VISUALIZERS, roots.VISBACKENDS, roots.LOG_PROCESSORS,
              roots.MODEL_WRAPPERS, roots.STRATEGIES, roots.RUNNERS)


# Registries whose config keys are exactly the constructor's arguments
# (for models only mmvlp's own: mmcv builds layers from norm_cfg & co. after
# popping keys of its own).
_ARGUMENT_CHECKED = (roots.MODELS, roots.TRANSFORMS, roots.DATASETS,
                     roots.HOOKS, roots.OPTIMIZERS, roots.LOOPS)


class ConfigError(ValueError):
    """A config that cannot train; the message lists every problem found.

    Args:
        problems (Sequence[str]): One line per problem, each naming the
            field, its value and what would be valid.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f'{count} problem{"s" if count > 1 else ""} in the config '
            '(nothing was built or trained):\n  - ' +
            '\n  - '.join(self.problems))


def _scoped(root, scope: Optional[str]):
    """``root``'s registry for ``scope`` (as the runner builds with it),
    ``root`` itself when the scope has none."""
    if scope is None or scope == root.scope:
        return root
    try:
        import_module(f'{scope}.registry')
    except ImportError:
        pass
    child = root._search_child(scope)  # (an empty Registry is falsy)
    return root if child is None else child


def _lookup(root, name: str, scope: Optional[str]):
    """The object ``name`` stands for in ``root``'s registry of ``scope``,
    or None."""
    try:
        return _scoped(root, scope).get(name)
    except Exception:  # get_object_from_string failures
        return None


def _in_standalone_registries(name: str) -> bool:
    """Whether a registry outside mmengine's tree (e.g. mmpretrain's
    ``BATCH_AUGMENTS``) of an imported ``*.registry`` module knows
    ``name``."""
    tree = {id(root) for root in _ALL_ROOTS}
    for module_name, module in list(sys.modules.items()):
        if not module_name.endswith('.registry') or module is None:
            continue
        for value in list(vars(module).values()):
            if not isinstance(value, Registry) or \
                    id(value._get_root_registry()) in tree:
                continue
            try:
                if value.get(name) is not None:
                    return True
            except Exception:
                continue
    return False


def _suggestions(root, name: str, scope: Optional[str]) -> List[str]:
    """Registered names close to ``name``, spelled as usable from
    ``scope`` (``'mmpretrain.CustomDataset'`` for another scope's)."""
    registry = _scoped(root, scope)
    spellings: Dict[str, List[str]] = {}
    chain = registry
    while chain is not None:
        chain.import_from_location()
        for key in chain.module_dict:
            spellings.setdefault(key.lower(), []).append(key)
        chain = chain.parent
    for child_scope, child in root._children.items():
        if child is registry:
            continue
        child.import_from_location()
        for key in child.module_dict:
            spellings.setdefault(key.lower(), []).append(
                f'{child_scope}.{key}')
    bare = name.split('.')[-1].lower()
    close = difflib.get_close_matches(bare, list(spellings), n=4,
                                      cutoff=0.6)
    found: List[str] = []
    for key in close:
        for spelling in spellings[key]:
            if spelling not in found:
                found.append(spelling)
    return found[:6]


class _Checker:
    """Walks a config; collects problems and the BEiT3 backbones."""

    def __init__(self, scope: Optional[str]) -> None:
        self.scope = scope
        self.problems: List[str] = []
        self.backbones: List[Tuple[str, Any]] = []  # (path, built on meta)
        self.model_type = None

    # -- registry types -----------------------------------------------------
    def walk(self, node, path: str, root, scope: Optional[str]) -> None:
        if isinstance(node, dict):
            scope = node.get('_scope_', scope)
            kind = node.get('type')
            if isinstance(kind, str) and path.split('.')[-1].split('[')[
                    0] not in _NOT_REGISTRY_KEYS:
                self.check_type(node, path, kind, root, scope)
            constructor = node.get('constructor')
            if isinstance(constructor, str) and root is roots.OPTIM_WRAPPERS:
                self.check_name(f'{path}.constructor', constructor,
                                roots.OPTIM_WRAPPER_CONSTRUCTORS, scope)
            for key, value in node.items():
                if key in ('type', '_scope_'):
                    continue
                child_root = roots.HOOKS if path == 'default_hooks' \
                    else _KEY_REGISTRY.get(key, root)
                self.walk(value, f'{path}.{key}', child_root, scope)
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                self.walk(value, f'{path}[{index}]', root, scope)

    def check_type(self, node: dict, path: str, kind: str, root,
                   scope: Optional[str]) -> None:
        found = self.check_name(f'{path}.type', kind, root, scope)
        if found is None:
            return
        if root in _ARGUMENT_CHECKED and inspect.isclass(found) and (
                root is not roots.MODELS or
                found.__module__.startswith('mmvlp.')):
            self.check_arguments(node, path, found)
        from mmvlp.models import BEiT3, BEiT3Pretrain
        if path == 'model' and inspect.isclass(found):
            self.model_type = found
        if inspect.isclass(found) and issubclass(found, BEiT3):
            self.build_backbone(node, path, found)
        if path == 'model' and found is BEiT3Pretrain:
            backbone = node.get('backbone')
            if not isinstance(backbone, dict):
                self.problems.append(
                    f'model.backbone must be a BEiT3 config dict, got '
                    f'{backbone!r}.')

    def check_name(self, path: str, name: str, root, scope: Optional[str]):
        """The object ``name`` resolves to (None, and a problem recorded,
        when nothing does)."""
        if root is not None:
            found = _lookup(root, name, scope)
            if found is not None:
                return found
        for other in _ALL_ROOTS:  # a key the table above does not know
            if other is not root:
                found = _lookup(other, name, scope)
                if found is not None:
                    return found
        if _in_standalone_registries(name):
            return None  # built by its owner (e.g. batch augments)
        target = root or roots.MODELS
        close = _suggestions(target, name, scope)
        where = f'{target.name} registry of scope {scope!r}'
        hint = (f'did you mean {" or ".join(repr(c) for c in close)}?'
                if close else 'no registered name is close; check the '
                'spelling, the scope prefix (e.g. mmpretrain.X) or '
                'custom_imports.')
        self.problems.append(f'{path}={name!r} is not in the {where}; '
                             f'{hint}')
        return None

    def check_arguments(self, node: dict, path: str, cls) -> None:
        """Keys of ``node`` that ``cls`` does not take (classes without
        ``**kwargs`` only)."""
        try:
            parameters = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD
               for p in parameters.values()):
            return
        known = [name for name in parameters if name != 'self']
        for key in sorted(set(node) - set(known) - {'type', '_scope_'}):
            close = difflib.get_close_matches(key, known, n=2)
            hint = (f'did you mean {" or ".join(map(repr, close))}?'
                    if close else f'it takes {known}.')
            self.problems.append(
                f'{path}.{key}: {cls.__name__} has no argument {key!r}; '
                f'{hint}')

    # -- BEiT3 consistency --------------------------------------------------
    def build_backbone(self, node: dict, path: str, cls) -> None:
        args = {k: v for k, v in node.items() if k not in ('type', '_scope_')}
        try:
            with torch.device('meta'):
                backbone = cls(**args)
        except (ValueError, TypeError, KeyError) as error:
            self.problems.append(f'{path}: {error}')
            return
        self.backbones.append((path, backbone))


def _default(cls, name: str):
    return inspect.signature(cls).parameters[name].default


def _arg(step: dict, cls, name: str):
    return step.get(name, _default(cls, name))


def _pipelines(cfg: Config):
    """``(path, dataset dict)`` of every dataset in the dataloaders."""
    found = []

    def visit(node, path):
        if isinstance(node, dict):
            if 'pipeline' in node or node.get('type') in (
                    'TextCorpusDataset', 'mmvlp.TextCorpusDataset'):
                found.append((path, node))
            for key, value in node.items():
                visit(value, f'{path}.{key}')
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                visit(value, f'{path}[{index}]')

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            visit(cfg[key], key)
    return found


def _text_vocab(tokenizer_cfg: dict, path: str, problems: List[str]):
    """The id count of a text tokenizer config, or None when its model file
    is not there (yet)."""
    from mmvlp.text import TextTokenizer
    model_file = tokenizer_cfg.get('model_file')
    if not isinstance(model_file, str) or not osp.isfile(model_file):
        return None
    try:
        return TextTokenizer(model_file, tokenizer_cfg.get('style', 'xlmr'),
                             max(3, tokenizer_cfg.get('max_length', 64))
                             ).vocab_size
    except ValueError as error:
        problems.append(f'{path}: {error}')
        return None


def _check_text_and_images(checker: _Checker, cfg: Config) -> None:
    """Pipelines against the (first) BEiT3 backbone of the model."""
    from mmvlp.datasets.transforms import (BlockwiseMaskGenerator,
                                           PackFields, TokenizeText,
                                           TwoViewCrop)
    from mmvlp.models import BEiT3Pretrain
    from mmvlp.text import TextTokenizer
    if not checker.backbones:
        return
    where, backbone = checker.backbones[0]
    problems = checker.problems
    table = f'{where}.max_text_len={backbone.max_text_len}'
    vocab = f'{where}.vocab_size={backbone.vocab_size}'
    grid = tuple(backbone.patch_grid)
    pretrain = checker.model_type is BEiT3Pretrain

    def text_length(path, name, value):
        if value is not None and value > backbone.max_text_len:
            problems.append(
                f'{path}.{name}={value} is longer than the text position '
                f'table ({table}); use {name} <= {backbone.max_text_len} or '
                f'build the backbone with max_text_len >= {value}.')

    def text_vocab(path, tokenizer_cfg):
        size = _text_vocab(tokenizer_cfg, path, problems)
        if size is not None and size > backbone.vocab_size:
            problems.append(
                f'{path}.model_file ({tokenizer_cfg["model_file"]}) gives '
                f'{size} token ids (style '
                f'{tokenizer_cfg.get("style", "xlmr")!r}, mask included), '
                f'more than the text embedding rows ({vocab}); set '
                f'vocab_size >= {size} or use the matching tokenizer.')

    for dataset_path, dataset in _pipelines(cfg):
        tokenizer = dataset.get('tokenizer')
        if isinstance(tokenizer, dict):
            text_length(f'{dataset_path}.tokenizer', 'max_length',
                        _arg(tokenizer, TextTokenizer, 'max_length'))
            text_vocab(f'{dataset_path}.tokenizer', tokenizer)
        for index, step in enumerate(dataset.get('pipeline') or []):
            if not isinstance(step, dict):
                continue
            kind = str(step.get('type', '')).split('.')[-1]
            path = f'{dataset_path}.pipeline[{index}]'
            if kind == 'TokenizeText':
                text_length(path, 'max_length',
                            _arg(step, TokenizeText, 'max_length'))
                text_vocab(path, step)
            elif kind == 'PackFields':
                text_length(path, 'pad_to', _arg(step, PackFields, 'pad_to'))
            elif kind == 'TextMasking':
                size = step.get('vocab_size')
                mask = step.get('mask_id')
                if isinstance(size, int) and size > backbone.vocab_size:
                    problems.append(
                        f'{path}.vocab_size={size} draws ids beyond the text '
                        f'embedding rows ({vocab}); use vocab_size <= '
                        f'{backbone.vocab_size}.')
                if isinstance(mask, int) and mask >= backbone.vocab_size:
                    problems.append(
                        f'{path}.mask_id={mask} is outside the text '
                        f'embedding rows ({vocab}); use an id below '
                        f'{backbone.vocab_size} (the tokenizer\'s mask id).')
            elif pretrain and kind == 'BlockwiseMaskGenerator':
                size = _arg(step, BlockwiseMaskGenerator, 'input_size')
                size = (size, size) if isinstance(size, int) else tuple(size)
                if size != grid:
                    problems.append(
                        f'{path}.input_size={size} does not match the '
                        f'backbone\'s {grid[0]}x{grid[1]} patch grid '
                        f'({where}.img_size / patch_size); use input_size='
                        f'{grid if grid[0] != grid[1] else grid[0]}.')
            elif pretrain and kind == 'TwoViewCrop':
                size = _arg(step, TwoViewCrop, 'size')
                size = (size, size) if isinstance(size, int) else tuple(size)
                expected = tuple(backbone.img_size)
                if size != expected and not backbone.dynamic_img_size:
                    valid = expected[0] if expected[0] == expected[1] \
                        else expected
                    problems.append(
                        f'{path}.size={size} differs from {where}.img_size='
                        f'{expected}; use size={valid}.')


def _warnings(cfg: Config) -> None:
    hooks = cfg.get('default_hooks') or {}
    checkpoint = hooks.get('checkpoint') if isinstance(hooks, dict) else None
    if isinstance(checkpoint, dict) and checkpoint.get(
            'max_keep_ckpts') == 1:
        print_log(
            'default_hooks.checkpoint.max_keep_ckpts=1: mmengine deletes the '
            'previous checkpoint before it writes the next, so a run killed '
            'while saving keeps none; keep 2 or more.',
            logger='current', level=30)


def check_config(cfg: Config) -> None:
    """Check ``cfg`` before the runner is built.

    * every ``type`` the runner would build resolves in its registry and
      scope (``default_scope``, ``_scope_``); an unknown one is reported
      with its field and the closest registered names;
    * every ``BEiT3`` in the model is built on the meta device (no memory,
      no weights), so a wrong ``arch``, an ``img_size`` not divisible by
      the patch size etc. are reported with their field;
    * the data pipelines agree with the (first) BEiT3 backbone: text
      lengths (``TokenizeText.max_length``, ``TextCorpusDataset``'s
      tokenizer, ``PackFields.pad_to``) within ``max_text_len``, text
      tokenizer ids and ``TextMasking`` ids within ``vocab_size``, and for
      ``BEiT3Pretrain`` the ``TwoViewCrop`` size and the
      ``BlockwiseMaskGenerator`` grid equal to the backbone's.

    Args:
        cfg (Config): The merged config (command-line options applied).

    Raises:
        ConfigError: Listing every problem found.
    """
    import mmvlp.datasets  # noqa: F401  (registers the transforms)
    import mmvlp.engine  # noqa: F401
    import mmvlp.models  # noqa: F401
    checker = _Checker(cfg.get('default_scope'))
    for key in _TOP_LEVEL:
        if cfg.get(key) is not None:
            checker.walk(cfg[key], key, _KEY_REGISTRY.get(key),
                         checker.scope)
    _check_text_and_images(checker, cfg)
    _warnings(cfg)
    if checker.problems:
        raise ConfigError(checker.problems)
