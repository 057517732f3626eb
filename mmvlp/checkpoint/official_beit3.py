"""How official BEiT-3 files look: telling one from other checkpoints and
reading its task from its head keys.

Pure functions of the key names, below the models: checkpoint inspection
names such files, the converters in :mod:`mmvlp.models.converters` map them.
"""
import re
from dataclasses import dataclass
from typing import Dict, Tuple

import torch

__all__ = [
    'BACKBONE_PARTS', 'OFFICIAL_TASKS', 'OfficialTask', 'detect_task',
    'is_official_beit3', 'normalize_official_keys'
]

#: Top-level names of a bare torchscale ``BEiT3`` state dict.
BACKBONE_PARTS = ('text_embed.', 'vision_embed.', 'encoder.')


@dataclass(frozen=True)
class OfficialTask:
    """How the official model of one task maps onto mmvlp.

    Attributes:
        name (str): Task name (``--task`` of the converter).
        official (str): The official class in ``modeling_finetune.py``.
        model_type (str): The mmvlp model.
        head_keys (tuple[str]): Regexes of the official head keys (all
            required for a complete head).
        renames (tuple[tuple[str, str]]): ``(official prefix, mmvlp
            prefix)`` of the head keys, first match wins.
        final_norm (bool): Whether the official model has the final norm.
        vision_only (bool): Whether the mmvlp model has no text parts.
        head_desc (str): The official head keys, for messages.
    """
    name: str
    official: str
    model_type: str
    head_keys: Tuple[str, ...] = ()
    renames: Tuple[Tuple[str, str], ...] = ()
    final_norm: bool = True
    vision_only: bool = False
    head_desc: str = ''

    def is_head_key(self, key: str) -> bool:
        return any(re.fullmatch(p, key) for p in self.head_keys)

    def rename(self, key: str) -> str:
        for src, dst in self.renames:
            if key.startswith(src):
                return dst + key[len(src):]
        return key


_WB = r'\.(weight|bias)'
OFFICIAL_TASKS: Dict[str, OfficialTask] = {
    'backbone': OfficialTask('backbone', 'BEiT3 (pretrained files)',
                             'mmvlp.BEiT3'),
    'imagenet': OfficialTask(
        'imagenet', 'BEiT3ForImageClassification',
        'mmvlp.BEiT3ImageClassifier', ('fc_norm' + _WB, 'head' + _WB),
        (('fc_norm.', 'head.fc_norm.'), ('head.', 'head.fc.')),
        final_norm=False, vision_only=True, head_desc='fc_norm.*, head.*'),
    'vqav2': OfficialTask(
        'vqav2', 'BEiT3ForVisualQuestionAnswering', 'mmvlp.BEiT3VQA',
        (r'pooler\.(norm|dense)' + _WB, r'head\.[013]' + _WB),
        final_norm=False, head_desc='pooler.{norm,dense}.*, head.{0,1,3}.*'),
    'nlvr2': OfficialTask(
        'nlvr2', 'BEiT3ForVisualReasoning', 'mmvlp.BEiT3NLVR2',
        (r'head\.(norm1|dense1|norm2|dense2)' + _WB, ),
        head_desc='head.{norm1,dense1,norm2,dense2}.*'),
    'retrieval': OfficialTask(
        'retrieval', 'BEiT3ForRetrieval', 'mmvlp.BEiT3Retrieval',
        (r'vision_head\.weight', r'language_head\.weight', 'logit_scale'),
        head_desc='vision_head.weight, language_head.weight, logit_scale'),
    'captioning': OfficialTask(
        'captioning', 'BEiT3ForCaptioning', 'mmvlp.BEiT3Captioner',
        ('mlm_head' + _WB, ), (('mlm_head.', 'mlm_head.fc.'), ),
        head_desc='mlm_head.*'),
}
#: A key that only the head of each task has.
_SIGNATURES = {'imagenet': 'fc_norm.weight', 'vqav2': 'pooler.dense.weight',
               'nlvr2': 'head.dense1.weight',
               'retrieval': 'vision_head.weight',
               'captioning': 'mlm_head.weight'}


def detect_task(weights: Dict[str, torch.Tensor]) -> str:
    """The task of an official file, read from its head keys.

    A file whose only keys beside the backbone are ``mlm_head.*`` is a
    captioning model; one with no head, or with heads of no single task
    (e.g. the pretraining heads of a pretrained file), is ``'backbone'``.

    Raises:
        ValueError: Heads of several tasks.
    """
    weights = normalize_official_keys(weights)
    found = [t for t, key in _SIGNATURES.items() if key in weights]
    if len(found) > 1:
        raise ValueError(f'The file has the heads of several tasks '
                         f'({", ".join(found)}); choose one with --task.')
    if found == ['captioning']:
        others = [k for k in weights if not k.startswith('beit3.') and
                  not OFFICIAL_TASKS['captioning'].is_head_key(k)]
        if others:
            return 'backbone'
    return found[0] if found else 'backbone'


def is_official_beit3(weights: Dict[str, torch.Tensor]) -> bool:
    """Whether a weights dict holds an official / torchscale BEiT-3 (with or
    without the ``beit3.`` prefix, DDP's ``module.`` stripped)."""
    keys = normalize_official_keys(weights)
    return 'beit3.vision_embed.proj.weight' in keys


def normalize_official_keys(
        weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official weights with the key variants of released and re-saved
    files made uniform: a ``module.`` prefix on every key (DDP) is removed,
    and a bare torchscale ``BEiT3`` state dict (``text_embed.*``,
    ``vision_embed.*``, ``encoder.*`` at the top) gets the ``beit3.``
    prefix of the fine-tuning wrappers.

    Args:
        weights (dict): Name to tensor.

    Returns:
        dict: A new dict (the tensors are not copied).
    """
    if weights and all(k.startswith('module.') for k in weights):
        weights = {k[len('module.'):]: v for k, v in weights.items()}
    if not any(k.startswith('beit3.') for k in weights) and (
            'vision_embed.proj.weight' in weights):
        weights = {('beit3.' + k if k.startswith(BACKBONE_PARTS) else k): v
                   for k, v in weights.items()}
    return dict(weights)
