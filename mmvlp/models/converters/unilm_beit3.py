"""Convert official BEiT-3 backbone weights (unilm / torchscale keys) to
mmvlp's ``BEiT3``.

The official files hold a dict under ``model`` or ``module`` whose backbone
keys start with ``beit3.`` (``A`` = vision expert, ``B`` = language expert)
and whose task heads (``head``, ``fc_norm``, ``pooler`` ...) sit beside them
(those are mapped by :mod:`.unilm_beit3_tasks`). Any torchscale ``BEiT3``
converts: any width, depth, FFN width, patch and image size and vocabulary,
decoupled (multiway attention) or shared attention, and vision-only files
(no text table, no text experts). Conversion is a pure function of the
weights dict, so it is testable without files.
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from mmvlp.checkpoint.official_beit3 import (  # noqa: F401
    BACKBONE_PARTS, is_official_beit3, normalize_official_keys)
from mmvlp.checkpoint.state_dicts import find_tensors
from .checks import check_against_model, registered_model

__all__ = [
    'ConversionReport', 'convert_unilm_beit3', 'unwrap_checkpoint',
    'normalize_official_keys', 'is_official_beit3'
]

#: Official backbone keys the converter understands (``{i}`` = layer index).
EXPECTED_KEYS = (
    'beit3.text_embed.weight (absent in vision-only files)',
    'beit3.vision_embed.proj.{weight,bias}',
    'beit3.vision_embed.{cls_token,mask_token}',
    'beit3.encoder.embed_positions.A.weight (and .B with text)',
    'beit3.encoder.layers.{i}.self_attn.{q,k,v,out}_proj[.{A,B}].{weight,bias}',
    'beit3.encoder.layers.{i}.self_attn.inner_attn_ln[.{A,B}].{weight,bias}',
    'beit3.encoder.layers.{i}.self_attn_layer_norm[.{A,B}].{weight,bias}',
    'beit3.encoder.layers.{i}.ffn.{A,B}.{fc1,fc2,ffn_layernorm}.*',
    'beit3.encoder.layers.{i}.final_layer_norm.{A,B}.{weight,bias}',
    'beit3.encoder.layer_norm.{A,B}.{weight,bias} (optional)',
)
#: ``beit3.text_embed`` rows of ``beit3.spm`` above which the default text
#: mask id (64001) exists.
DEFAULT_TEXT_MASK_ID = 64001
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
    (re.compile(r'^ffn(?:\.(A|B))?\.fc1\.(weight|bias)$'), 'ffn{e}.fc1.{p}'),
    (re.compile(r'^ffn(?:\.(A|B))?\.fc2\.(weight|bias)$'), 'ffn{e}.fc2.{p}'),
    (re.compile(r'^ffn(?:\.(A|B))?\.ffn_layernorm\.(weight|bias)$'),
     'ffn{e}.norm.{p}'),
    (re.compile(r'^final_layer_norm(?:\.(A|B))?\.(weight|bias)$'),
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
    # Single-way (vision-only) encoders.
    'encoder.layer_norm.weight': 'norm.vision.weight',
    'encoder.layer_norm.bias': 'norm.vision.bias',
}
#: Per-layer parts that are experts in the decoupled layout but plain
#: modules in a single-way encoder.
_FFN_PARTS = ('ffn', 'norm2')


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
        vocab_size (int | None): Rows of the text table (None: vision-only).
        max_text_len (int | None): Text positions after dropping the offset.
        final_norm (bool): Whether the final LayerNorm was present.
        vision_only (bool): The file has no text parts.
        notes (list[str]): Things filled in or worth knowing.
    """
    layout: str
    embed_dims: int
    num_layers: int
    feedforward_channels: int
    patch_size: int
    img_size: int
    vocab_size: Optional[int]
    max_text_len: Optional[int]
    final_norm: bool
    vision_only: bool = False
    notes: Tuple[str, ...] = ()

    def backbone_cfg(self, num_heads: Optional[int] = None) -> dict:
        """A ``BEiT3`` config matching the converted weights.

        Args:
            num_heads (int, optional): Attention heads; they cannot be read
                from weights, so 64-channel heads are assumed when None
                (true for base, large and giant: check it for other sizes).
        """
        heads = num_heads or max(1, self.embed_dims // 64)
        cfg = dict(
            type='mmvlp.BEiT3',
            arch=dict(
                embed_dims=self.embed_dims,
                num_layers=self.num_layers,
                num_heads=heads,
                feedforward_channels=self.feedforward_channels),
            img_size=self.img_size,
            patch_size=self.patch_size,
            layout=self.layout,
            num_vl_layers=0,
            final_norm=self.final_norm)
        if self.vision_only:
            cfg['vision_only'] = True
        else:
            cfg.update(vocab_size=self.vocab_size,
                       max_text_len=self.max_text_len)
            if self.vocab_size <= DEFAULT_TEXT_MASK_ID:
                # The mask id is the tokenizer's, not the weights'.
                cfg['text_mask_token_id'] = None
        return cfg

    def summary(self) -> str:
        """Human-readable lines for the converter's output."""
        text = 'none (vision-only)' if self.vision_only else (
            f'{self.max_text_len} positions, vocabulary {self.vocab_size}')
        lines = [
            f'layout: {self.layout}',
            f'layers x width (FFN): {self.num_layers} x {self.embed_dims} '
            f'({self.feedforward_channels})',
            f'patch {self.patch_size}, image {self.img_size}; text: {text}',
            'final norm: ' +
            ('yes' if self.final_norm else 'no (set final_norm=False)'),
        ]
        return '\n'.join(lines + [f'note: {n}' for n in self.notes])


def unwrap_checkpoint(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The weights dict of an official file: under ``model``, ``module`` or
    ``state_dict`` (nested at most three deep), or the file itself.

    Args:
        checkpoint (dict): What ``torch.load`` returned.

    Returns:
        dict: Parameter name to tensor (other entries dropped).
    """
    return find_tensors(checkpoint, ('model', 'module', 'state_dict'))


def _not_beit3(reason: str) -> ValueError:
    expected = '\n  '.join(EXPECTED_KEYS)
    return ValueError(f'This is not an official BEiT-3 checkpoint: {reason}.\n'
                      f'Expected keys (under "model" or "module"; the '
                      f'"beit3." prefix may be missing):\n  {expected}')


def _find_layout(backbone: Dict[str, torch.Tensor],
                 vision_only: bool) -> Tuple[str, bool]:
    """``(layout, single_way)`` of the encoder layers."""
    rests = [m.group(2) for m in map(_LAYER.match, backbone) if m]
    attn_experts = any(
        _QKV.match(r) and _QKV.match(r).group(2) for r in rests)
    ffn_experts = any(re.match(r'^(ffn|final_layer_norm)\.(A|B)\.', r)
                      for r in rests)
    single_way = not attn_experts and not ffn_experts
    if single_way and not vision_only:
        raise ValueError('The encoder layers have no modality experts (no '
                         '".A." / ".B." keys) but the file has a text table: '
                         'not a BEiT-3 Multiway Transformer.')
    return ('decoupled' if attn_experts or single_way else 'shared'), \
        single_way


def convert_unilm_beit3(
        weights: Dict[str, torch.Tensor],
        layout: Optional[str] = None,
        patch_size: Optional[int] = None) -> Tuple[Dict[str, torch.Tensor],
                                                   ConversionReport]:
    """Map official BEiT-3 backbone weights to mmvlp ``BEiT3`` names.

    Only the backbone (``beit3.*``) is converted; keys beside it (task
    heads) are left to :func:`~.unilm_beit3_tasks.map_official_beit3`.

    Args:
        weights (dict): Official weights (see :func:`unwrap_checkpoint`;
            the key variants of :func:`normalize_official_keys` are
            accepted).
        layout (str, optional): Expected layout; detected when None. A
            mismatch with the weights raises.
        patch_size (int, optional): Checked against the patch projection.

    Returns:
        tuple: The mmvlp state dict and a :class:`ConversionReport`.

    Raises:
        ValueError: The weights are not a BEiT-3 checkpoint, hold unknown or
            inconsistent backbone keys, or do not match ``layout`` /
            ``patch_size``.
    """
    weights = normalize_official_keys(weights)
    backbone = {k[len('beit3.'):]: v for k, v in weights.items()
                if k.startswith('beit3.')}
    if not backbone:
        raise _not_beit3('no key starts with "beit3." (or "vision_embed.")')
    if 'encoder.embed_positions.weight' in backbone:  # single-way encoder
        backbone['encoder.embed_positions.A.weight'] = backbone.pop(
            'encoder.embed_positions.weight')
    required = ('vision_embed.proj.weight', 'vision_embed.cls_token',
                'encoder.embed_positions.A.weight')
    missing = [k for k in required if k not in backbone]
    if missing:
        raise _not_beit3('missing ' + ', '.join('beit3.' + k for k in missing))
    text_parts = [k for k in ('text_embed.weight',
                              'encoder.embed_positions.B.weight')
                  if k in backbone]
    if len(text_parts) == 1:
        raise ValueError(f'The checkpoint has {text_parts[0]} but not the '
                         'other text part (beit3.text_embed.weight and '
                         'beit3.encoder.embed_positions.B.weight go '
                         'together).')
    vision_only = not text_parts
    found_layout, single_way = _find_layout(backbone, vision_only)
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
            expert = expert or ('A' if single_way else '')
            qkv.setdefault((index, expert, param), {})[which] = value
            continue
        for pattern, template in _LAYER_RULES:
            rule = pattern.match(rest)
            if rule:
                expert, param = rule.groups()
                part = template.split('{')[0].split('.')[0]
                if expert is None and (single_way or part in _FFN_PARTS):
                    if not single_way:
                        unknown.append(key)
                        break
                    expert = 'A'
                suffix = f'.{EXPERT[expert]}' if expert else ''
                out[f'layers.{index}.' + template.format(e=suffix, p=param)] = \
                    value
                break
        else:
            unknown.append(key)
    if vision_only:
        unknown += [k for k in backbone if re.search(r'\.B\.', k)]
    if unknown:
        raise ValueError('Unknown BEiT-3 keys (not converted): ' +
                         ', '.join('beit3.' + k for k in sorted(set(unknown))))
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

    notes = []
    if vision_only and 'mask_token' not in out:
        out['mask_token'] = out['cls_token'].new_zeros(out['cls_token'].shape)
        notes.append('no vision_embed.mask_token in the file (zeros: a '
                     'vision-only model never masks patches)')
    report = _describe(out, found_layout, vision_only, tuple(notes))
    if patch_size is not None and patch_size != report.patch_size:
        raise ValueError(f'The checkpoint has patch size {report.patch_size}, '
                         f'not {patch_size}.')
    return out, report


def _describe(state: Dict[str, torch.Tensor], layout: str, vision_only: bool,
              notes: Tuple[str, ...]) -> ConversionReport:
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
    report = ConversionReport(
        layout=layout,
        embed_dims=embed_dims,
        num_layers=len(indices),
        feedforward_channels=fc1.shape[0],
        patch_size=patch_size,
        img_size=side * patch_size,
        vocab_size=None if vision_only else
        state['text_embed.weight'].shape[0],
        max_text_len=None if vision_only else
        state['pos_embed_text'].shape[1],
        final_norm='norm.vision.weight' in state,
        vision_only=vision_only,
        notes=notes)
    # By its registered name: the backbone loads official files through
    # this module, so importing ``BEiT3`` here would close a cycle.
    check_against_model(
        state, registered_model('BEiT3'), report.backbone_cfg(),
        f'BEiT3 ({report.num_layers} layers, width {report.embed_dims}, '
        f'{report.layout}{", vision-only" if vision_only else ""})')
    return report
