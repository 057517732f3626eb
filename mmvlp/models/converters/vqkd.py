"""Convert VQ-KD tokenizer weights (unilm BEiT v2 or mmpretrain 1.2.0) to
mmvlp's :class:`~mmvlp.models.tokenizers.VQKD`.

Both sources use a ViT with separate query/value biases (no key bias; a key
bias cannot change attention, so mmvlp's fused ``qkv`` bias gets zeros there).
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from ..tokenizers.vqkd import VQKD
from .checks import check_against_model

__all__ = ['VQKDConversion', 'convert_vqkd']

# Block-level renames: (pattern on the part after ``blocks.i.`` / ``layers.i.``
# , mmvlp name), per source format.
_BLOCK_RULES = {
    'unilm': [('norm1.', 'norm1.'), ('norm2.', 'norm2.'),
              ('attn.qkv.weight', 'attn.qkv.weight'),
              ('attn.proj.', 'attn.proj.'), ('mlp.fc1.', 'ffn.fc1.'),
              ('mlp.fc2.', 'ffn.fc2.')],
    'mmpretrain': [('ln1.', 'norm1.'), ('ln2.', 'norm2.'),
                   ('attn.qkv.weight', 'attn.qkv.weight'),
                   ('attn.proj.', 'attn.proj.'),
                   ('ffn.layers.0.0.', 'ffn.fc1.'),
                   ('ffn.layers.1.', 'ffn.fc2.')],
}
_TOWER_RULES = {
    # The released BEiT v2 tokenizers are built with use_mean_pooling=True:
    # their towers have no final `norm` (Identity) but an `fc_norm` on the
    # patch tokens, which is mmvlp's final norm for those tokens (LayerNorm
    # works per token).
    'unilm': [('patch_embed.proj.', 'patch_embed.proj.'),
              ('cls_token', 'cls_token'), ('pos_embed', 'pos_embed'),
              ('norm.', 'norm.'), ('fc_norm.', 'norm.')],
    'mmpretrain': [('patch_embed.projection.', 'patch_embed.proj.'),
                   ('cls_token', 'cls_token'), ('pos_embed', 'pos_embed'),
                   ('ln1.', 'norm.')],
}
_QUANTIZER = {
    'quantize.embedding.weight': 'quantizer.codebook',
    'quantize.embedding.initted': 'quantizer.initted',
    'quantize.cluster_size': 'quantizer.cluster_size',
}
# Kept by the references but not used by the tokenizer.
_DROPPED = ('quantize.embedding.embed_avg', 'quantize.embedding.cluster_size')
_IGNORED_PREFIXES = ('teacher_model.', 'scaling_layer.')
_TASK_LAYER = re.compile(r'^(encode|decode)_task_layer\.(0|2)\.(weight|bias)$')


@dataclass
class VQKDConversion:
    """What :func:`convert_vqkd` found.

    Attributes:
        source (str): ``'unilm'`` or ``'mmpretrain'``.
        model_cfg (dict): A ``VQKD`` config matching the weights.
        ignored (list): Source keys deliberately not converted.
    """
    source: str
    model_cfg: dict
    ignored: List[str] = field(default_factory=list)


def _detect(weights: Dict[str, torch.Tensor]) -> str:
    if any(k.startswith('encoder.blocks.') for k in weights):
        return 'unilm'
    if any(k.startswith('encoder.layers.') for k in weights):
        return 'mmpretrain'
    raise ValueError(
        'Not a VQ-KD checkpoint: expected encoder.blocks.{i}.* (unilm BEiT '
        'v2) or encoder.layers.{i}.* (mmpretrain 1.2.0 VQKD) keys, plus '
        'quantize.embedding.weight and encode_task_layer.{0,2}.*.')


def _convert_tower(weights: Dict[str, torch.Tensor], tower: str,
                   source: str, out: Dict[str, torch.Tensor],
                   unknown: List[str]) -> None:
    block_key = 'blocks' if source == 'unilm' else 'layers'
    block = re.compile(rf'^{tower}\.{block_key}\.(\d+)\.(.+)$')
    biases: Dict[int, Dict[str, torch.Tensor]] = {}
    for key, value in weights.items():
        if not key.startswith(tower + '.'):
            continue
        rest = key[len(tower) + 1:]
        match = block.match(key)
        if match:
            index, part = int(match.group(1)), match.group(2)
            if part in ('attn.q_bias', 'attn.v_bias'):
                biases.setdefault(index, {})[part[5]] = value
                continue
            for src, dst in _BLOCK_RULES[source]:
                if part.startswith(src):
                    out[f'{tower}.layers.{index}.{dst}{part[len(src):]}'] = \
                        value
                    break
            else:
                unknown.append(key)
            continue
        for src, dst in _TOWER_RULES[source]:
            if rest.startswith(src):
                out[f'{tower}.{dst}{rest[len(src):]}'] = value
                break
        else:
            unknown.append(key)
    for index, parts in biases.items():
        if set(parts) != {'q', 'v'}:
            unknown.append(f'{tower} block {index}: q_bias/v_bias incomplete')
            continue
        out[f'{tower}.layers.{index}.attn.qkv.bias'] = torch.cat(
            [parts['q'], torch.zeros_like(parts['q']), parts['v']])


def _tower_cfg(state: Dict[str, torch.Tensor], tower: str) -> dict:
    proj = state[f'{tower}.patch_embed.proj.weight']
    dims = proj.shape[0]
    layers = {int(k.split('.')[2]) for k in state
              if k.startswith(f'{tower}.layers.')}
    pos_rows = state[f'{tower}.pos_embed'].shape[1] - 1
    side = int(round(pos_rows**0.5))
    return dict(
        arch=dict(
            embed_dims=dims,
            num_layers=len(layers),
            num_heads=max(1, dims // 64),
            feedforward_channels=state[f'{tower}.layers.0.ffn.fc1.weight']
            .shape[0]),
        img_size=side * proj.shape[-1],
        patch_size=proj.shape[-1])


def convert_vqkd(
    weights: Dict[str, torch.Tensor],
    mean: Optional[Tuple[float, float, float]] = None,
    std: Optional[Tuple[float, float, float]] = None
) -> Tuple[Dict[str, torch.Tensor], VQKDConversion]:
    """Map VQ-KD weights of either source format to mmvlp names.

    Args:
        weights (dict): The tokenizer's weights (a ``target_generator.``
            prefix, as in mmpretrain BEiT v2 checkpoints, is stripped).
        mean (tuple, optional): Pixel mean (0-255) for the config; read from
            the unilm ``scaling_layer`` when present, else ImageNet's.
        std (tuple, optional): Pixel std, as ``mean``.

    Returns:
        tuple: The mmvlp state dict and a :class:`VQKDConversion`.

    Raises:
        ValueError: Not a VQ-KD checkpoint, unknown keys (e.g. layer scale or
            relative position bias, which VQ-KD does not use), or keys and
            shapes that do not form a consistent ``VQKD``.
    """
    if any(k.startswith('target_generator.') for k in weights):
        weights = {k[len('target_generator.'):]: v for k, v in weights.items()
                   if k.startswith('target_generator.')}
    source = _detect(weights)
    out: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    ignored = sorted(k for k in weights
                     if k.startswith(_IGNORED_PREFIXES) or k in _DROPPED)
    for tower in ('encoder', 'decoder'):
        _convert_tower(weights, tower, source, out, unknown)
    for key, value in weights.items():
        if key in _QUANTIZER:
            out[_QUANTIZER[key]] = value
        elif _TASK_LAYER.match(key):
            out[key] = value
        elif not key.startswith(('encoder.', 'decoder.')) and \
                key not in ignored:
            unknown.append(key)
    if unknown:
        raise ValueError('Unknown VQ-KD keys (not converted): ' +
                         ', '.join(sorted(unknown)))
    if 'quantizer.codebook' not in out:
        raise ValueError('Not a VQ-KD checkpoint: no quantize.embedding.weight'
                         ' (the codebook).')
    if 'quantizer.initted' in out:
        out['quantizer.initted'] = out['quantizer.initted'].bool().reshape(())
    if mean is None and 'scaling_layer.shift' in weights:
        mean = tuple((weights['scaling_layer.shift'].flatten() * 255).tolist())
        std = tuple((weights['scaling_layer.scale'].flatten() * 255).tolist())

    codebook = out['quantizer.codebook']
    model_cfg = dict(
        type='mmvlp.VQKD',
        encoder=_tower_cfg(out, 'encoder'),
        quantizer=dict(type='NormEMAVectorQuantizer',
                       num_codes=codebook.shape[0],
                       code_dims=codebook.shape[1]),
        decoder=None)
    if 'decoder.patch_embed.proj.weight' in out:
        decoder = _tower_cfg(out, 'decoder')
        decoder.pop('img_size')
        decoder.pop('patch_size')
        model_cfg['decoder'] = decoder
        model_cfg['target_dims'] = out['decode_task_layer.2.weight'].shape[0]
    if mean is not None:
        model_cfg.update(mean=tuple(mean), std=tuple(std))
    check_against_model(out, VQKD, model_cfg, 'VQKD')
    return out, VQKDConversion(source, model_cfg, ignored)
