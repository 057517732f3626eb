"""Official BEiT-3 files (pretrained and fine-tuned) -> mmvlp task models.

The one place that knows how a released file maps onto an mmvlp model. The
official fine-tuning code (unilm ``beit3/modeling_finetune.py``) saves
``{'model': state_dict}`` with the backbone under ``beit3.`` and the task
head beside it:

========== =================================== ======================== =====
task       official head keys                  mmvlp model (head keys)  norm
========== =================================== ======================== =====
imagenet   ``fc_norm.*``, ``head.*``           ``BEiT3ImageClassifier``  no
                                               (``head.fc_norm.*``,
                                               ``head.fc.*``)
vqav2      ``pooler.{norm,dense}.*``,          ``BEiT3VQA`` (same)       no
           ``head.{0,1,3}.*``
nlvr2      ``head.{norm1,dense1,norm2,         ``BEiT3NLVR2`` (same)     yes
           dense2}.*``
retrieval  ``vision_head.weight``,             ``BEiT3Retrieval`` (same) yes
           ``language_head.weight``,
           ``logit_scale``
captioning ``mlm_head.{weight,bias}``          ``BEiT3Captioner``        yes
                                               (``mlm_head.fc.*``)
backbone   none (pretrained files)             ``BEiT3``                 yes
========== =================================== ======================== =====

("norm": whether the official model has the final LayerNorm,
``normalize_output``.) :func:`map_official_beit3` takes the raw weights and
the target (a built model, or a task name) and returns the mmvlp weights
with a :class:`OfficialMapping` report of what was mapped, left out, filled
in or missing. The converter tool, ``init_cfg=dict(type='Pretrained')`` on
a task model, ``load_from`` and ``tools/test.py`` all use it: task models
inherit :class:`OfficialCheckpointMixin`, which converts an official file
while the model loads it.
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log

from mmvlp.checkpoint.inspection import compact_keys as _compact
from mmvlp.checkpoint.official_beit3 import (OFFICIAL_TASKS, OfficialTask,
                                             detect_task, is_official_beit3,
                                             normalize_official_keys)
from ..backbones.beit3_keys import TEXT_ONLY_DESCRIPTION, is_text_only_key
from .checks import registered_model
from .unilm_beit3 import (ConversionReport, convert_unilm_beit3,
                          unwrap_checkpoint)

__all__ = [
    'OFFICIAL_TASKS', 'OfficialTask', 'OfficialMapping', 'detect_task',
    'task_of_model', 'map_official_beit3', 'load_official_in_place',
    'OfficialCheckpointMixin'
]


#: The reason given for a head tensor of another size.
_OTHER_SIZE = 'a head of another size:'
#: Model state that official files do not hold (and need not).
_NOT_IN_FILES = ('data_preprocessor.', )


def task_of_model(model: nn.Module) -> str:
    """The official task an mmvlp model takes the files of.

    Raises:
        ValueError: Not a model official files map onto.
    """
    # The classes by their registered names: these models load official
    # files through this module, so importing them would close a cycle.
    kinds = (('BEiT3VQA', 'vqav2'), ('BEiT3NLVR2', 'nlvr2'),
             ('BEiT3Retrieval', 'retrieval'), ('BEiT3Captioner', 'captioning'),
             ('BEiT3', 'backbone'))
    for name, task in kinds:
        if isinstance(model, registered_model(name)):
            return task
    beit3 = registered_model('BEiT3')
    head = getattr(model, 'head', None)
    if isinstance(getattr(model, 'backbone', None), beit3) and hasattr(
            head, 'fc_norm') and hasattr(head, 'fc'):
        return 'imagenet'
    raise ValueError(
        f'Official BEiT-3 files load into BEiT3, BEiT3VQA, BEiT3NLVR2, '
        f'BEiT3Retrieval, BEiT3Captioner or an image classifier with a BEiT3 '
        f'backbone and BEiT3ClsHead, not {type(model).__name__}.')


@dataclass
class OfficialMapping:
    """The result of :func:`map_official_beit3`.

    Attributes:
        task (str): The target task.
        file_task (str): The task of the file (from its head keys).
        state_dict (dict): Weights under the target's names.
        backbone (ConversionReport): What the backbone conversion found.
        heads (dict): Official head key -> mmvlp key.
        unused (dict): Official key -> why it was not mapped (left out of
            ``state_dict``).
        missing (list): Target keys the file does not give (with a model).
        notes (list): What was adapted (dropped text parts or final norm,
            resized position tables, filled tensors).
        num_heads (int, optional): Attention heads for :meth:`model_cfg`.
    """
    task: str
    file_task: str
    state_dict: Dict[str, torch.Tensor]
    backbone: ConversionReport
    heads: Dict[str, str] = field(default_factory=dict)
    unused: Dict[str, str] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    num_heads: Optional[int] = None

    @property
    def spec(self) -> OfficialTask:
        return OFFICIAL_TASKS[self.task]

    def problems(self) -> List[str]:
        """Messages about parts that do not load, each with its fix."""
        out = []
        resized = {self.spec.rename(k) for k, r in self.unused.items()
                   if r.startswith(_OTHER_SIZE)}
        if resized:
            out.append(
                f'The head of the file does not fit the model '
                f'({_compact(resized)}: another number of classes / '
                'answers): it keeps its initialisation, as the official '
                'fine-tuning code drops a head of another size. Right for '
                'fine-tuning on another label set; to evaluate, set the '
                'model\'s number of classes to the file\'s.')
        missing_head = [k for k in self.missing
                        if not k.startswith('backbone.') and
                        k not in resized]
        if missing_head and self.task != 'backbone':
            spec = self.spec
            what = ('a pretrained backbone' if self.file_task == 'backbone'
                    else f'the {self.file_task} head')
            out.append(
                f'The file has no {self.task} head ({spec.official}: '
                f'{spec.head_desc}), only {what}: '
                f'{_compact(missing_head)} keep their initialisation. That '
                'is right when fine-tuning from a pretrained file; to '
                f'evaluate, load a fine-tuned {self.task} file.')
        missing_backbone = [k for k in self.missing
                            if k.startswith('backbone.') or
                            self.task == 'backbone']
        if missing_backbone:
            out.append(
                f'The file lacks backbone weights {_compact(missing_backbone)}'
                ' (they keep their initialisation); check final_norm (False '
                'for the official ImageNet and VQA models), vision_only and '
                'the architecture.')
        others = {k: r for k, r in self.unused.items()
                  if not r.startswith(_OTHER_SIZE)}
        if others:
            reasons = sorted(set(others.values()))
            out.append(f'Not loaded from the file: '
                       f'{_compact(others)} ({"; ".join(reasons)}).')
        return out

    def summary(self) -> str:
        """Human-readable lines (converter output and load logs)."""
        lines = [f'official {self.file_task} file -> mmvlp {self.task} '
                 f'({self.spec.model_type})',
                 self.backbone.summary()]
        if self.heads:
            lines.append('head: ' + ', '.join(
                f'{k} -> {v}' if k != v else k
                for k, v in sorted(self.heads.items())))
        lines += [f'note: {n}' for n in self.notes]
        return '\n'.join(lines)

    def model_cfg(self) -> dict:
        """A config of the target model that fits the weights."""
        backbone = self.backbone.backbone_cfg(self.num_heads)
        spec, weights = self.spec, self.state_dict
        if self.task == 'backbone':
            return backbone
        backbone['final_norm'] = spec.final_norm
        if spec.vision_only:
            backbone.update(vision_only=True, out_type='avg_featmap')
            for key in ('vocab_size', 'max_text_len', 'text_mask_token_id'):
                backbone.pop(key, None)
        cfg = dict(type=spec.model_type, backbone=backbone)
        if self.task == 'imagenet' and 'head.fc.weight' in weights:
            classes, dims = weights['head.fc.weight'].shape
            cfg.update(neck=None, head=dict(type='mmvlp.BEiT3ClsHead',
                                            num_classes=classes,
                                            in_channels=dims))
        elif self.task == 'vqav2' and 'head.3.weight' in weights:
            cfg.update(num_classes=weights['head.3.weight'].shape[0],
                       answers='PATH/TO/answer2label.txt')
        elif self.task == 'nlvr2' and 'head.dense2.weight' in weights:
            cfg.update(num_classes=weights['head.dense2.weight'].shape[0])
        elif self.task == 'retrieval' and 'vision_head.weight' in weights:
            cfg.update(embed_dims=weights['vision_head.weight'].shape[0])
        return cfg


def map_official_beit3(weights: Dict[str, torch.Tensor],
                       task: Optional[str] = None,
                       model: Optional[nn.Module] = None,
                       num_heads: Optional[int] = None) -> OfficialMapping:
    """Map an official BEiT-3 file onto an mmvlp model.

    Args:
        weights (dict): The file's weights (:func:`~.unilm_beit3.
            unwrap_checkpoint`; with or without ``beit3.``).
        task (str, optional): The target task (a key of
            :data:`OFFICIAL_TASKS`); detected from the head keys when None
            and no ``model`` is given.
        model (nn.Module, optional): The target model. Its task is used,
            and the weights are fitted to it: text parts dropped for a
            vision-only backbone, the final norm dropped when it has none,
            position tables resized / cut to its image size and text
            length; ``missing`` lists what it has and the file does not.
        num_heads (int, optional): Attention heads for
            :meth:`OfficialMapping.model_cfg` (not stored in weights).

    Returns:
        OfficialMapping: The weights under the target's names and the
        report.

    Raises:
        ValueError: Not an official BEiT-3 file, unknown task, tensors
            whose shapes do not fit ``model``.
    """
    weights = normalize_official_keys(weights)
    file_task = detect_task(weights)
    if model is not None:
        model_task = task_of_model(model)
        if task is not None and task != model_task:
            raise ValueError(f'task={task!r} but the model is a '
                             f'{model_task} model.')
        task = model_task
    task = task or file_task
    if task not in OFFICIAL_TASKS:
        raise ValueError(f'Unknown task {task!r}; choose one of '
                         f'{sorted(OFFICIAL_TASKS)}.')
    spec = OFFICIAL_TASKS[task]
    backbone_state, report = convert_unilm_beit3(weights)
    prefix = '' if task == 'backbone' else 'backbone.'
    mapping = OfficialMapping(task, file_task, {}, report,
                              num_heads=num_heads)
    for key in weights:
        if key.startswith('beit3.'):
            continue
        if spec.is_head_key(key):
            mapping.heads[key] = spec.rename(key)
            mapping.state_dict[mapping.heads[key]] = weights[key]
        elif file_task != 'backbone' and \
                OFFICIAL_TASKS[file_task].is_head_key(key):
            mapping.unused[key] = f'{file_task} head, not used by a ' \
                f'{task} model'
        else:
            mapping.unused[key] = 'not part of any official task model'
    mapping.notes += list(report.notes)
    if task == 'captioning':
        # BEiT3Captioner counts its training steps (for drop_worst_after).
        mapping.state_dict['train_steps'] = torch.zeros((), dtype=torch.long)
    if model is not None:
        backbone = model if task == 'backbone' else model.backbone
        backbone_state = _fit_backbone(backbone_state, backbone,
                                       mapping.notes)
    elif spec.vision_only and not report.vision_only:
        backbone_state = _drop_text(backbone_state, mapping.notes)
    mapping.state_dict.update(
        {prefix + k: v for k, v in backbone_state.items()})
    if model is not None:
        _compare(mapping, model)
    return mapping


def _drop_text(state: Dict[str, torch.Tensor],
               notes: List[str]) -> Dict[str, torch.Tensor]:
    kept = {k: v for k, v in state.items() if not is_text_only_key(k)}
    if len(kept) < len(state):
        notes.append(f'dropped {len(state) - len(kept)} text-only tensors '
                     f'({TEXT_ONLY_DESCRIPTION}): the model is vision-only')
    return kept


def _fit_backbone(state: Dict[str, torch.Tensor], backbone: nn.Module,
                  notes: List[str]) -> Dict[str, torch.Tensor]:
    """Adapt converted backbone weights to a built ``BEiT3``."""
    from ..layers import resize_pos_embed
    if getattr(backbone, 'vision_only', False):
        state = _drop_text(state, notes)
    if backbone.norm is None:
        norm = [k for k in state if k.startswith('norm.')]
        for key in norm:
            del state[key]
        if norm:
            notes.append('ignored the final norm of the file (the model has '
                         'final_norm=False, as the official ImageNet and '
                         'VQA models)')
    pos = state.get('pos_embed_vision')
    if pos is not None:
        rows = pos.shape[1] - 1
        side = int(rows**0.5)
        grid = tuple(backbone.patch_grid)
        if side * side == rows and (side, side) != grid:
            state['pos_embed_vision'] = resize_pos_embed(pos, (side, side),
                                                         grid)
            notes.append(f'resized the image position table from {side}x'
                         f'{side} to {grid[0]}x{grid[1]} patches (bicubic, '
                         'as the official fine-tuning code)')
    text = state.get('pos_embed_text')
    if text is not None and text.shape[1] > backbone.max_text_len:
        state['pos_embed_text'] = text[:, :backbone.max_text_len]
        notes.append(f'kept the first {backbone.max_text_len} of '
                     f'{text.shape[1]} text positions')
    return state


def _compare(mapping: OfficialMapping, model: nn.Module) -> None:
    """Fill ``missing``; raise on wrong shapes."""
    own = model.state_dict()
    got = mapping.state_dict
    # A head of another size is left out (the official fine-tuning code
    # drops such a classifier); other shapes must fit.
    heads = {v: k for k, v in mapping.heads.items()}
    for key in [k for k in got if k in heads and k in own and
                got[k].shape != own[k].shape]:
        mapping.unused[heads[key]] = (
            f'{_OTHER_SIZE} {tuple(got[key].shape)}, the model '
            f'{tuple(own[key].shape)}')
        del got[key]
    wrong = [f'{k}: {tuple(v.shape)} (model {tuple(own[k].shape)})'
             for k, v in got.items() if k in own and v.shape != own[k].shape]
    if wrong:
        raise ValueError(
            f'The official {mapping.file_task} file does not fit this '
            f'{type(model).__name__} (architecture, number of classes, '
            f'text length or patch size differ): {"; ".join(wrong[:6])}'
            f'{" ..." if len(wrong) > 6 else ""}. The converter '
            '(tools/model_converters/beit3_unilm_to_mmvlp.py) prints the '
            'config that fits the file.')
    persistent = set(own)
    mapping.missing = sorted(
        k for k in persistent - set(got)
        if not k.startswith(_NOT_IN_FILES) and k not in _NOT_IN_FILES)
    for key in [k for k in got if k not in persistent]:
        mapping.unused[key] = 'not a parameter of this model'
        del got[key]


def load_official_in_place(model: nn.Module, state_dict: dict,
                           prefix: str = '') -> Optional[OfficialMapping]:
    """Replace an official file's entries under ``prefix`` of a state dict
    being loaded by the mmvlp weights of ``model`` (in place).

    ``state_dict`` may hold the file's weights or the file itself (a
    ``model`` / ``module`` entry, as mmengine passes a checkpoint without
    ``state_dict``). Nothing happens for other checkpoints. Keys the model
    does not use stay under their names, so the loader reports them as
    unexpected; one log line summarises the mapping and a warning names
    what does not load.

    Returns:
        OfficialMapping | None: The mapping, or None when the entries are
        not an official BEiT-3 file.
    """
    entries = {k[len(prefix):]: v for k, v in state_dict.items()
               if k.startswith(prefix)}
    nested = any(isinstance(v, dict) for v in entries.values())
    weights = unwrap_checkpoint(entries) if nested else {
        k: v for k, v in entries.items() if isinstance(v, torch.Tensor)}
    if not weights or not is_official_beit3(weights):
        return None
    mapping = map_official_beit3(weights, model=model)
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]
    state_dict.update({prefix + k: v for k, v in mapping.state_dict.items()})
    normalized = normalize_official_keys(weights)
    state_dict.update({prefix + k: normalized[k] for k in mapping.unused
                       if k in normalized})
    print_log(f'{type(model).__name__}: loading an official BEiT-3 file.\n' +
              mapping.summary(), logger='current')
    from mmvlp.checkpoint.loading import note_official_mapping
    if note_official_mapping(model, mapping):
        return mapping  # the fit check reports what does not load
    for problem in mapping.problems():
        print_log(f'{type(model).__name__}: {problem}', logger='current',
                  level=logging.WARNING)
    return mapping


class OfficialCheckpointMixin:
    """Lets a model load official BEiT-3 files directly (``load_from``,
    ``tools/test.py``, ``init_cfg=dict(type='Pretrained')``,
    ``load_checkpoint``, ``load_state_dict``): they are converted by
    :func:`load_official_in_place` when the model starts loading them.

    A ``Pretrained`` ``init_cfg`` on the model itself (a whole-model
    checkpoint) also replaces the backbone's own ``Pretrained`` init, which
    is then skipped.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        load_official_in_place(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def has_pretrained_init(self) -> bool:
        """Whether the model's own ``init_cfg`` loads a checkpoint."""
        cfgs = self.init_cfg or []
        cfgs = cfgs if isinstance(cfgs, (list, tuple)) else [cfgs]
        return any(c.get('type') == 'Pretrained' for c in cfgs)

    def init_weights(self) -> None:
        backbone = getattr(self, 'backbone', None)
        original = getattr(backbone, 'init_cfg', None)
        cfgs = original if isinstance(original, (list, tuple)) else (
            [original] if original else [])
        skipped = [c for c in cfgs if c.get('type') == 'Pretrained']
        if not (self.has_pretrained_init() and skipped):
            return super().init_weights()
        print_log(f'{type(self).__name__}: the model\'s Pretrained init_cfg '
                  'replaces the backbone\'s (not loaded: '
                  f'{skipped[0].get("checkpoint")}).', logger='current')
        backbone.init_cfg = [c for c in cfgs if c not in skipped] or None
        try:
            super().init_weights()
        finally:
            backbone.init_cfg = original
