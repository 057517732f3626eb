"""Convert official BEiT-3 checkpoints (unilm / torchscale keys) to mmvlp.

The official files hold a dict under ``model`` or ``module`` whose backbone
keys start with ``beit3.`` (``A`` = vision expert, ``B`` = language expert)
and whose task heads (``head``, ``fc_norm``, ``pooler`` ...) sit beside them.
Conversion is a pure function of that dict, so it is testable without files.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from ..backbones.beit3 import BEiT3
from .checks import check_against_model

__all__ = ['ConversionReport', 'convert_unilm_beit3', 'unwrap_checkpoint']

#: Official backbone keys the converter understands (``{i}`` = layer index).
EXPECTED_KEYS = (
    'beit3.text_embed.weight',
    'beit3.vision_embed.proj.{weight,bias}',
    'beit3.vision_embed.{cls_token,mask_token}',
    'beit3.encoder.embed_positions.{A,B}.weight',
    'beit3.encoder.layers.{i}.self_attn.{q,k,v,out}_proj[.{A,B}].{weight,bias}',
    'beit3.encoder.layers.{i}.self_attn.inner_attn_ln[.{A,B}].{weight,bias}',
    'beit3.encoder.layers.{i}.self_attn_layer_norm[.{A,B}].{weight,bias}',
    'beit3.encoder.layers.{i}.ffn.{A,B}.{fc1,fc2,ffn_layernorm}.*',
    'beit3.encoder.layers.{i}.final_layer_norm.{A,B}.{weight,bias}',
    'beit3.encoder.layer_norm.{A,B}.{weight,bias} (optional)',
)
#: Prefixes of the official task heads (kept aside, not in ``state_dict``).
TASK_HEAD_PREFIXES = ('fc_norm.', 'head.', 'pooler.', 'vision_head.',
                      'language_head.', 'logit_scale', 'mlm_head.')
FAIRSEQ_OFFSET = 2
EXPERT = {'A': 'vision', 'B': 'text'}

_LAYER = re.compile(r'^encoder\.layers\.(\d+)\.(.+)$')
# (official suffix pattern, mmvlp suffix template); groups name the expert.
_LAYER_RULES: List[Tuple[re.Pattern, str]] = [
    (re.compile(r'^self_attn\.out_proj(?:\.(A|B))?\.(weight|bias)$'),
     'attn.proj{e}.{p}'),
    (re.compile(r'^self_attn\.inner_attn_ln(?:\.(A|B))?\.(weight|bias)$'),
     'attn.inner_norm{e}.{p}'),
    (re.compile(r'^self_attn_layer_norm(?:\.(A|B))?\.(weight|bias)$'),
     'norm1{e}.{p}'),
    (re.compile(r'^ffn\.(A|B)\.fc1\.(weight|bias)$'), 'ffn{e}.fc1.{p}'),
    (re.compile(r'^ffn\.(A|B)\.fc2\.(weight|bias)$'), 'ffn{e}.fc2.{p}'),
    (re.compile(r'^ffn\.(A|B)\.ffn_layernorm\.(weight|bias)$'),
     'ffn{e}.norm.{p}'),
    (re.compile(r'^final_layer_norm\.(A|B)\.(weight|bias)$'),
     'norm2{e}.{p}'),
]
_QKV = re.compile(r'^self_attn\.(q|k|v)_proj(?:\.(A|B))?\.(weight|bias)$')
_TOP_LEVEL = {
    'text_embed.weight': 'text_embed.weight',
    'vision_embed.proj.weight': 'patch_embed.proj.weight',
    'vision_embed.proj.bias': 'patch_embed.proj.bias',
    'vision_embed.cls_token': 'cls_token',
    'vision_embed.mask_token': 'mask_token',
    'encoder.layer_norm.A.weight': 'norm.vision.weight',
    'encoder.layer_norm.A.bias': 'norm.vision.bias',
    'encoder.layer_norm.B.weight': 'norm.text.weight',
    'encoder.layer_norm.B.bias': 'norm.text.bias',
}


@dataclass
class ConversionReport:
    """What a conversion found, for the summary and the checkpoint meta.

    Attributes:
        layout (str): ``'decoupled'`` or ``'shared'``.
        embed_dims (int): Token width.
        num_layers (int): Number of layers.
        feedforward_channels (int): FFN width.
        patch_size (int): Patch side.
        img_size (int): Image side implied by the vision position table.
        vocab_size (int): Rows of the text table.
        max_text_len (int): Text positions after dropping the offset.
        final_norm (bool): Whether the final LayerNorm was present.
        task_heads (dict): Task-head tensors kept aside.
    """
    layout: str
    embed_dims: int
    num_layers: int
    feedforward_channels: int
    patch_size: int
    img_size: int
    vocab_size: int
    max_text_len: int
    final_norm: bool
    task_heads: Dict[str, torch.Tensor] = field(default_factory=dict)

    def backbone_cfg(self) -> dict:
        """A ``BEiT3`` config matching the converted weights.

        ``num_heads`` cannot be read from weights; 64-channel heads are
        assumed (true for base, large and giant) and should be checked.
        """
        return dict(
            type='mmvlp.BEiT3',
            arch=dict(
                embed_dims=self.embed_dims,
                num_layers=self.num_layers,
                num_heads=max(1, self.embed_dims // 64),
                feedforward_channels=self.feedforward_channels),
            img_size=self.img_size,
            patch_size=self.patch_size,
            vocab_size=self.vocab_size,
            max_text_len=self.max_text_len,
            layout=self.layout,
            num_vl_layers=0,
            final_norm=self.final_norm)

    def summary(self) -> str:
        """Human-readable lines for the converter's output."""
        heads = ', '.join(sorted(self.task_heads)) or 'none'
        return '\n'.join([
            f'layout: {self.layout}',
            f'layers x width (FFN): {self.num_layers} x {self.embed_dims} '
            f'({self.feedforward_channels})',
            f'patch {self.patch_size}, image {self.img_size}, text positions '
            f'{self.max_text_len}, vocabulary {self.vocab_size}',
            f'final norm: {"yes" if self.final_norm else "no (set final_norm=False)"}',
            f'task-head tensors kept aside under "task_heads": {heads}',
        ])


def unwrap_checkpoint(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The weights dict of an official file (under ``model`` or ``module``).

    Args:
        checkpoint (dict): What ``torch.load`` returned.

    Returns:
        dict: Parameter name to tensor.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f'Expected a dict checkpoint, got '
                         f'{type(checkpoint).__name__}.')
    for key in ('model', 'module', 'state_dict'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def _not_beit3(reason: str) -> ValueError:
    expected = '\n  '.join(EXPECTED_KEYS)
    return ValueError(f'This is not an official BEiT-3 checkpoint: {reason}.\n'
                      f'Expected keys (under "model" or "module"):\n'
                      f'  {expected}')


def convert_unilm_beit3(
        weights: Dict[str, torch.Tensor],
        layout: Optional[str] = None,
        patch_size: Optional[int] = None) -> Tuple[Dict[str, torch.Tensor],
                                                   ConversionReport]:
    """Map official BEiT-3 weights to mmvlp ``BEiT3`` parameter names.

    Args:
        weights (dict): Official weights (see :func:`unwrap_checkpoint`).
        layout (str, optional): Expected layout; detected when None. A
            mismatch with the weights raises.
        patch_size (int, optional): Checked against the patch projection.

    Returns:
        tuple: The mmvlp state dict and a :class:`ConversionReport`.

    Raises:
        ValueError: The weights are not a BEiT-3 checkpoint, hold unknown or
            inconsistent keys, or do not match ``layout``/``patch_size``.
    """
    backbone = {k[len('beit3.'):]: v for k, v in weights.items()
                if k.startswith('beit3.')}
    task_heads = {k: v for k, v in weights.items()
                  if k.startswith(TASK_HEAD_PREFIXES)}
    if not backbone:
        raise _not_beit3('no key starts with "beit3."')
    required = ('text_embed.weight', 'vision_embed.proj.weight',
                'vision_embed.cls_token', 'encoder.embed_positions.A.weight',
                'encoder.embed_positions.B.weight')
    missing = [k for k in required if k not in backbone]
    if missing:
        raise _not_beit3('missing ' + ', '.join('beit3.' + k for k in missing))
    others = sorted(k for k in weights
                    if not k.startswith('beit3.') and k not in task_heads)
    if others:
        raise ValueError(f'Unknown keys beside the BEiT-3 backbone and its '
                         f'task heads: {others}')

    decoupled = any(_QKV.match(k.split('.', 3)[-1]) and '.A.' in k
                    for k in backbone if k.startswith('encoder.layers.'))
    found_layout = 'decoupled' if decoupled else 'shared'
    if layout is not None and layout != found_layout:
        raise ValueError(
            f'The checkpoint has {found_layout} attention but layout='
            f'{layout!r} was requested; use --layout {found_layout} (released '
            'BEiT-3 checkpoints are decoupled).')

    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[Tuple[int, str, str], Dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in backbone.items():
        if key in _TOP_LEVEL:
            out[_TOP_LEVEL[key]] = value
            continue
        if key == 'encoder.embed_positions.A.weight':
            out['pos_embed_vision'] = value[FAIRSEQ_OFFSET:].unsqueeze(0)
            continue
        if key == 'encoder.embed_positions.B.weight':
            out['pos_embed_text'] = value[FAIRSEQ_OFFSET:].unsqueeze(0)
            continue
        match = _LAYER.match(key)
        if not match:
            unknown.append(key)
            continue
        index, rest = int(match.group(1)), match.group(2)
        qkv_match = _QKV.match(rest)
        if qkv_match:
            which, expert, param = qkv_match.groups()
            qkv.setdefault((index, expert or '', param), {})[which] = value
            continue
        for pattern, template in _LAYER_RULES:
            rule = pattern.match(rest)
            if rule:
                expert, param = rule.groups()
                suffix = f'.{EXPERT[expert]}' if expert else ''
                out[f'layers.{index}.' + template.format(e=suffix, p=param)] = \
                    value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError('Unknown BEiT-3 keys (not converted): ' +
                         ', '.join('beit3.' + k for k in sorted(unknown)))
    for (index, expert, param), parts in sorted(qkv.items()):
        if set(parts) != {'q', 'k', 'v'}:
            raise ValueError(
                f'Layer {index}: incomplete query/key/value projections '
                f'{sorted(parts)} for {param} of expert {expert or "shared"}.')
        shapes = {tuple(t.shape) for t in parts.values()}
        if len(shapes) != 1:
            raise ValueError(f'Layer {index}: q/k/v {param} shapes differ: '
                             f'{sorted(shapes)}.')
        suffix = f'.{EXPERT[expert]}' if expert else ''
        out[f'layers.{index}.attn.qkv{suffix}.{param}'] = torch.cat(
            [parts['q'], parts['k'], parts['v']], dim=0)

    report = _describe(out, found_layout, task_heads)
    if patch_size is not None and patch_size != report.patch_size:
        raise ValueError(f'The checkpoint has patch size {report.patch_size}, '
                         f'not {patch_size}.')
    return out, report


def _describe(state: Dict[str, torch.Tensor], layout: str,
              task_heads: Dict[str, torch.Tensor]) -> ConversionReport:
    """Read the architecture back from converted weights and check it."""
    proj = state['patch_embed.proj.weight']
    embed_dims, patch_size = proj.shape[0], proj.shape[-1]
    indices = sorted({int(k.split('.')[1]) for k in state
                      if k.startswith('layers.')})
    if indices != list(range(len(indices))) or not indices:
        raise ValueError(f'Layer indices are not contiguous from 0: {indices}')
    fc1 = state.get('layers.0.ffn.vision.fc1.weight')
    if fc1 is None:
        raise ValueError('Layer 0 has no vision FFN (ffn.A.fc1).')
    patch_rows = state['pos_embed_vision'].shape[1] - 1
    side = int(patch_rows**0.5)
    if side * side != patch_rows:
        raise ValueError(f'The vision position table has {patch_rows} patch '
                         'rows (after CLS and the 2-row offset): not a square '
                         'grid.')
    final_norm = 'norm.vision.weight' in state
    report = ConversionReport(
        layout=layout,
        embed_dims=embed_dims,
        num_layers=len(indices),
        feedforward_channels=fc1.shape[0],
        patch_size=patch_size,
        img_size=side * patch_size,
        vocab_size=state['text_embed.weight'].shape[0],
        max_text_len=state['pos_embed_text'].shape[1],
        final_norm=final_norm,
        task_heads=task_heads)
    check_against_model(
        state, BEiT3, report.backbone_cfg(),
        f'BEiT3 ({report.num_layers} layers, width {report.embed_dims}, '
        f'{report.layout})')
    return report
