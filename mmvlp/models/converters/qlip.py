"""Convert released QLIP models (NVlabs/QLIP, Hugging Face layout) to
mmvlp's :class:`~mmvlp.models.tokenizers.BSQViT` with its text tower.

A QLIP model folder holds ``config.json`` (a ``QLIPConfig``:
``vision_config``, ``decoder_config``, ``text_config`` and top-level
``projection_dim``, ``vision_projection_bias``, ``text_projection_bias``)
and ``model.safetensors`` (or ``pytorch_model.bin``; sharded files with an
``*.index.json`` too), optionally ``preprocessor_config.json`` with the
pixel mean/std. The weights map as follows (official name -> mmvlp name):

- ``vision_model.embeddings.{class_embedding, patch_embedding,
  position_embedding}`` -> ``encoder.{cls_token, patch_embed.proj,
  pos_embed}``; ``vision_model.post_layernorm`` -> ``encoder.norm``
  (applied to the CLS token only, ``final_norm='cls'``);
- ``*.encoder.layers.{i}``: ``layer_norm{1,2}`` -> ``norm{1,2}``,
  ``self_attn.{q,k,v}_proj`` -> ``attn.qkv`` (fused; a missing bias is
  zero, which is what the official layer computes), ``self_attn.
  inner_attn_ln`` -> ``attn.inner_norm``, ``self_attn.out_proj`` ->
  ``attn.proj``, ``mlp.{fc1, fc2, ffn_ln}`` -> ``ffn.{fc1, fc2, norm}`` and
  SwiGLU's ``mlp.{w1, w2}`` -> ``ffn.fc1`` (gate rows, then value rows),
  ``mlp.w3`` -> ``ffn.fc2``;
- ``vision_model.quant_embed{,_post}.{c_fc, c_proj}`` ->
  ``quant_embed{,_post}.{0, 2}``;
- ``vision_decoder.{position_embeddings, norm}`` -> ``decoder.{pos_embed,
  norm}``, ``vision_decoder.ffn.0`` / ``conv_out`` -> ``pixel_head.0`` /
  ``pixel_head.2``;
- ``text_model.embeddings.{token_embedding, position_embedding}`` ->
  ``text_encoder.{token_embed, pos_embed}``, ``text_model.
  final_layer_norm`` -> ``text_encoder.norm``;
- ``visual_projection`` / ``text_projection`` / ``logit_scale`` ->
  ``image_proj`` / ``text_proj`` / ``logit_scale``.

The rotary tables (``*rope.freqs_cos`` / ``freqs_sin``, buffers that the
official model saves once or once per layer) are checked against the ones
mmvlp computes and dropped.
"""
import json
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from ..layers.rope import rope_2d_tables
from ..quantizers.bsq import kwargs_from_official
from ..tokenizers.bsq_vit import BSQViT
from .checks import check_against_model

__all__ = [
    'QLIPConversion', 'CLIP_MEAN', 'CLIP_STD', 'qlip_config_to_mmvlp',
    'convert_qlip', 'read_qlip_checkpoint', 'load_qlip'
]

# OpenAI CLIP pixel statistics (EVA-CLIP and QLIP inherit them), 0-255.
CLIP_MEAN = (122.7709383, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)

# The official configuration defaults (configuration_qlip.py) of the fields
# read here, for config.json files that leave some out.
_TOWER_DEFAULTS = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
    hidden_act='gelu', layer_norm_eps=1e-5, q_bias=True, k_bias=True,
    v_bias=True, subln=False, swiglu=False, rope=False)
_TEXT_DEFAULTS = dict(
    _TOWER_DEFAULTS, vocab_size=49408, hidden_size=512,
    intermediate_size=2048, num_attention_heads=8,
    max_position_embeddings=77, eos_token_id=49407)
_VISION_DEFAULTS = dict(
    _TOWER_DEFAULTS, quantizer='none', quantizer_l2_norm=False,
    quantizer_embed_type='identity', hidden_size_post_q=None,
    quantizer_cfg={})
_ACTS = {'gelu': 'gelu', 'quick_gelu': 'quick_gelu',
         'gelu_pytorch_tanh': 'gelu_tanh', 'gelu_new': 'gelu_tanh'}
_ROPE_BUFFER = re.compile(r'(^|\.)rope\.freqs_(cos|sin)$')


@dataclass
class QLIPConversion:
    """What :func:`convert_qlip` found.

    Attributes:
        model_cfg (dict): The matching ``BSQViT`` config.
        checked_rope (list): Rotary buffers compared with mmvlp's and
            dropped.
        ignored (list): Other source keys deliberately not converted
            (non-persistent ``position_ids`` some exports keep).
    """
    model_cfg: dict
    checked_rope: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)


def _tower(cfg: dict, defaults: dict, name: str) -> dict:
    if not isinstance(cfg, dict):
        raise ValueError(f'QLIP config.json needs a {name} dict.')
    return {**defaults, **cfg}


def _act(tower: dict, name: str) -> str:
    if tower['swiglu']:
        return 'swiglu'
    act = tower['hidden_act']
    if act not in _ACTS:
        raise ValueError(f'{name}.hidden_act={act!r} is not supported; '
                         f'mmvlp has {sorted(_ACTS)}.')
    return _ACTS[act]


def _arch(tower: dict) -> dict:
    return dict(embed_dims=tower['hidden_size'],
                num_layers=tower['num_hidden_layers'],
                num_heads=tower['num_attention_heads'],
                feedforward_channels=tower['intermediate_size'])


def _layer_options(tower: dict, name: str) -> dict:
    return dict(layer_norm_eps=tower['layer_norm_eps'],
                subln=bool(tower['subln']), ffn_act=_act(tower, name),
                qkv_bias=any(tower[k] for k in ('q_bias', 'k_bias',
                                                'v_bias')))


def qlip_config_to_mmvlp(hf_config: dict,
                         mean: Tuple[float, ...] = CLIP_MEAN,
                         std: Tuple[float, ...] = CLIP_STD) -> dict:
    """The ``BSQViT`` config of a QLIP ``config.json``.

    Args:
        hf_config (dict): The parsed ``config.json`` of a ``QLIPModel``.
        mean (tuple): Pixel mean (0-255) of the model's image processor.
        std (tuple): Pixel std (0-255).

    Returns:
        dict: ``dict(type='BSQViT', ...)`` with a ``CLIPTextTransformer``.

    Raises:
        ValueError: A setting mmvlp cannot reproduce, named with the fix.
    """
    vision = _tower(hf_config.get('vision_config'), _VISION_DEFAULTS,
                    'vision_config')
    decoder = _tower(hf_config.get('decoder_config'), _TOWER_DEFAULTS,
                     'decoder_config')
    text = _tower(hf_config.get('text_config'), _TEXT_DEFAULTS,
                  'text_config')
    if vision['quantizer'] != 'bsq':
        raise ValueError(
            f"vision_config.quantizer is {vision['quantizer']!r}; only QLIP "
            "models with the binary spherical quantizer ('bsq') convert.")
    quantizer = dict(type='BinarySphericalQuantizer',
                     **kwargs_from_official(vision['quantizer_cfg']))
    embed_type = vision['quantizer_embed_type']
    if embed_type not in ('mlp', 'identity'):
        raise ValueError(f'quantizer_embed_type={embed_type!r}: expected '
                         "'mlp' or 'identity'.")
    hidden = vision['hidden_size']
    post = vision['hidden_size_post_q'] or hidden
    if embed_type == 'identity':
        post = hidden
    if decoder['hidden_size'] != post:
        raise ValueError(
            f"decoder_config.hidden_size ({decoder['hidden_size']}) must "
            f'equal the width after the quantizer ({post}): the official '
            'decoder adds its positions to those tokens directly.')
    grid = vision['image_size'] // vision['patch_size']
    dec_grid = decoder['image_size'] // decoder['patch_size']
    if dec_grid != grid or decoder['patch_size'] != vision['patch_size']:
        raise ValueError(
            f"The decoder ({decoder['image_size']} px, patch "
            f"{decoder['patch_size']}) must match the encoder "
            f"({vision['image_size']} px, patch {vision['patch_size']}).")
    eos = text['eos_token_id']
    cfg = dict(
        type='BSQViT',
        encoder=dict(
            arch=_arch(vision), img_size=vision['image_size'],
            patch_size=vision['patch_size'],
            in_channels=vision['num_channels'], final_norm='cls',
            rope=bool(vision['rope']),
            **_layer_options(vision, 'vision_config')),
        quantizer=quantizer,
        quant_embed=embed_type,
        decoder=dict(
            arch=_arch(decoder), with_cls_token=False, final_norm=True,
            embed_input=False, rope=bool(decoder['rope']),
            **_layer_options(decoder, 'decoder_config')),
        pixel_head_hidden=decoder['intermediate_size'],
        recon_loss='l2',
        text_encoder=dict(
            type='CLIPTextTransformer', arch=_arch(text),
            vocab_size=text['vocab_size'],
            max_text_len=text['max_position_embeddings'],
            eos_token_id=eos,
            # The official pooling: the largest id for old CLIP exports
            # whose eos id is 2, else the first eos token.
            pool='argmax' if eos == 2 else 'eos',
            **_layer_options(text, 'text_config')),
        embed_dims=hf_config.get('projection_dim', 512),
        image_proj_bias=bool(hf_config.get('vision_projection_bias', False)),
        text_proj_bias=bool(hf_config.get('text_projection_bias', False)),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std))
    if embed_type == 'mlp':
        cfg['post_quant_dims'] = post
    return cfg


def _fuse_qkv(parts: Dict[str, torch.Tensor], prefix: str
              ) -> Dict[str, torch.Tensor]:
    weights = [parts.pop(f'self_attn.{n}_proj.weight', None) for n in 'qkv']
    if any(w is None for w in weights):
        raise ValueError(f'{prefix}: q/k/v projection weights missing.')
    out = {'attn.qkv.weight': torch.cat(weights)}
    biases = [parts.pop(f'self_attn.{n}_proj.bias', None) for n in 'qkv']
    if any(b is not None for b in biases):
        out['attn.qkv.bias'] = torch.cat([
            b if b is not None else weights[0].new_zeros(weights[0].shape[0])
            for b in biases])
    return out


_LAYER_RENAMES = (
    ('layer_norm1.', 'norm1.'), ('layer_norm2.', 'norm2.'),
    ('self_attn.inner_attn_ln.', 'attn.inner_norm.'),
    ('self_attn.out_proj.', 'attn.proj.'), ('mlp.fc1.', 'ffn.fc1.'),
    ('mlp.fc2.', 'ffn.fc2.'), ('mlp.ffn_ln.', 'ffn.norm.'),
    ('mlp.w3.', 'ffn.fc2.'))


def _convert_layer(parts: Dict[str, torch.Tensor],
                   prefix: str) -> Dict[str, torch.Tensor]:
    """One official encoder layer (keys after ``layers.{i}.``)."""
    out = _fuse_qkv(parts, prefix)
    for kind in ('weight', 'bias'):
        gate = parts.pop(f'mlp.w1.{kind}', None)
        value = parts.pop(f'mlp.w2.{kind}', None)
        if gate is not None and value is not None:
            out[f'ffn.fc1.{kind}'] = torch.cat([gate, value])
    for key in list(parts):
        for src, dst in _LAYER_RENAMES:
            if key.startswith(src):
                out[dst + key[len(src):]] = parts.pop(key)
                break
    if parts:
        raise ValueError(f'{prefix}: unexpected keys {sorted(parts)}.')
    return out


def _check_rope(name: str, tensor: torch.Tensor, tower: dict) -> None:
    grid = tower['image_size'] // tower['patch_size']
    head_dims = tower['hidden_size'] // tower['num_attention_heads']
    cos, sin = rope_2d_tables((grid, grid), head_dims)
    expected = cos if name.endswith('cos') else sin
    if tuple(tensor.shape) != tuple(expected.shape) or not torch.allclose(
            tensor.float(), expected, atol=1e-5):
        raise ValueError(
            f'{name} differs from the 2-D rotary table mmvlp computes '
            f'(grid {grid}x{grid}, head width {head_dims}, reference grid '
            '16, theta 10000); this model uses another rotary layout.')


def convert_qlip(weights: Dict[str, torch.Tensor], hf_config: dict,
                 mean: Tuple[float, ...] = CLIP_MEAN,
                 std: Tuple[float, ...] = CLIP_STD
                 ) -> Tuple[Dict[str, torch.Tensor], QLIPConversion]:
    """Convert an official QLIP state dict.

    Args:
        weights (dict): The ``QLIPModel`` state dict (safetensors or
            ``pytorch_model.bin`` names).
        hf_config (dict): Its ``config.json``.
        mean (tuple): Pixel mean (0-255).
        std (tuple): Pixel std (0-255).

    Returns:
        tuple: The ``BSQViT`` state dict and a :class:`QLIPConversion`.

    Raises:
        ValueError: Missing, unexpected or misshaped weights, or settings
            mmvlp cannot reproduce.
    """
    cfg = qlip_config_to_mmvlp(hf_config, mean, std)
    info = QLIPConversion(model_cfg=cfg)
    towers = dict(
        vision_model=_tower(hf_config['vision_config'], _VISION_DEFAULTS, ''),
        vision_decoder=_tower(hf_config['decoder_config'], _TOWER_DEFAULTS,
                              ''))
    src = dict(weights)
    out: Dict[str, torch.Tensor] = {}
    for key in list(src):
        if _ROPE_BUFFER.search(key):
            _check_rope(key, src.pop(key), towers[key.split('.')[0]])
            info.checked_rope.append(key)
        elif key.endswith('position_ids'):
            src.pop(key)
            info.ignored.append(key)

    layer = re.compile(
        r'^(vision_model|vision_decoder|text_model)\.encoder\.layers\.'
        r'(\d+)\.(.+)$')
    grouped: Dict[Tuple[str, int], Dict[str, torch.Tensor]] = {}
    for key in list(src):
        match = layer.match(key)
        if match:
            tower, index, rest = match.groups()
            grouped.setdefault((tower, int(index)), {})[rest] = src.pop(key)
    dst_tower = dict(vision_model='encoder', vision_decoder='decoder',
                     text_model='text_encoder')
    for (tower, index), parts in sorted(grouped.items()):
        prefix = f'{dst_tower[tower]}.layers.{index}.'
        for key, value in _convert_layer(
                parts, f'{tower}.encoder.layers.{index}').items():
            out[prefix + key] = value

    def take(key: str) -> torch.Tensor:
        if key not in src:
            raise ValueError(f'The QLIP weights lack {key!r}; is this a '
                             'QLIPModel state dict?')
        return src.pop(key)

    renames = {
        'vision_model.embeddings.patch_embedding.': 'encoder.patch_embed.'
        'proj.',
        'vision_model.post_layernorm.': 'encoder.norm.',
        'vision_model.quant_embed.c_fc.': 'quant_embed.0.',
        'vision_model.quant_embed.c_proj.': 'quant_embed.2.',
        'vision_model.quant_embed_post.c_fc.': 'quant_embed_post.0.',
        'vision_model.quant_embed_post.c_proj.': 'quant_embed_post.2.',
        'vision_decoder.norm.': 'decoder.norm.',
        'vision_decoder.ffn.0.': 'pixel_head.0.',
        'vision_decoder.conv_out.': 'pixel_head.2.',
        'text_model.embeddings.token_embedding.': 'text_encoder.'
        'token_embed.',
        'text_model.final_layer_norm.': 'text_encoder.norm.',
        'visual_projection.': 'image_proj.',
        'text_projection.': 'text_proj.',
    }
    for key in list(src):
        for old, new in renames.items():
            if key.startswith(old):
                out[new + key[len(old):]] = src.pop(key)
                break
    out['encoder.cls_token'] = take(
        'vision_model.embeddings.class_embedding').reshape(1, 1, -1)
    out['encoder.pos_embed'] = take(
        'vision_model.embeddings.position_embedding.weight')[None]
    out['decoder.pos_embed'] = take('vision_decoder.position_embeddings')
    out['text_encoder.pos_embed'] = take(
        'text_model.embeddings.position_embedding.weight')[None]
    out['logit_scale'] = take('logit_scale').reshape(())
    if src:
        raise ValueError(f'Unexpected QLIP weights: {sorted(src)}.')
    check_against_model(out, BSQViT, cfg, 'QLIP BSQViT')
    return out, info


def _read_weights(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - safetensors is pinned
            raise ImportError('Reading .safetensors needs the safetensors '
                              'package: pip install safetensors.') from None
        return load_file(path, device='cpu')
    from mmvlp.compat.torch_load import safe_torch_load
    from .unilm_beit3 import unwrap_checkpoint
    return unwrap_checkpoint(safe_torch_load(path, 'cpu'))


def read_qlip_checkpoint(path: str, config: Optional[str] = None
                         ) -> Tuple[dict, Dict[str, torch.Tensor],
                                    Tuple[Tuple[float, ...],
                                          Tuple[float, ...]]]:
    """Read a QLIP model folder (or a weights file and its config).

    Args:
        path (str): A folder with ``config.json`` and ``model.safetensors``
            / ``pytorch_model.bin`` (or their ``*.index.json`` shards), or a
            ``.safetensors`` / ``.bin`` / ``.pth`` state dict.
        config (str, optional): ``config.json`` when ``path`` is a file
            (default: the ``config.json`` beside it).

    Returns:
        tuple: The config dict, the weights and ``(mean, std)`` in 0-255
        (from ``preprocessor_config.json`` when present, else CLIP's).

    Raises:
        FileNotFoundError: What is missing and what was looked for.
    """
    folder = path if osp.isdir(path) else osp.dirname(osp.abspath(path))
    config = config or osp.join(folder, 'config.json')
    if not osp.isfile(config):
        raise FileNotFoundError(
            f'No QLIP config.json at {config}; pass --config with the '
            "model's config.json.")
    with open(config) as f:
        hf_config = json.load(f)
    if osp.isdir(path):
        for name in ('model.safetensors', 'pytorch_model.bin',
                     'model.safetensors.index.json',
                     'pytorch_model.bin.index.json'):
            if osp.isfile(osp.join(path, name)):
                path = osp.join(path, name)
                break
        else:
            raise FileNotFoundError(
                f'{path} has no model.safetensors or pytorch_model.bin (or '
                'their .index.json shards).')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} does not exist.')
    if path.endswith('.index.json'):
        with open(path) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        weights = {}
        for shard in shards:
            weights.update(_read_weights(osp.join(folder, shard)))
    else:
        weights = _read_weights(path)
    mean, std = CLIP_MEAN, CLIP_STD
    processor = osp.join(folder, 'preprocessor_config.json')
    if osp.isfile(processor):
        with open(processor) as f:
            proc = json.load(f)
        if 'image_mean' in proc and 'image_std' in proc:
            mean = tuple(255. * m for m in proc['image_mean'])
            std = tuple(255. * s for s in proc['image_std'])
    return hf_config, weights, (mean, std)


def load_qlip(path: str, config: Optional[str] = None) -> BSQViT:
    """A released QLIP model as an mmvlp ``BSQViT`` in eval mode.

    Args:
        path (str): See :func:`read_qlip_checkpoint`.
        config (str, optional): See :func:`read_qlip_checkpoint`.

    Returns:
        BSQViT: With its ``CLIPTextTransformer`` text tower; the model's
        config is in ``model.qlip_cfg`` and its text tokenizer (CLIP BPE,
        a callable ``texts -> (ids, padding_mask)``) in ``model.tokenizer``.
    """
    from mmvlp.text import CLIPBPETokenizer
    hf_config, weights, (mean, std) = read_qlip_checkpoint(path, config)
    state, info = convert_qlip(weights, hf_config, mean, std)
    cfg = {k: v for k, v in info.model_cfg.items() if k != 'type'}
    model = BSQViT(**cfg)
    model.load_state_dict(state, strict=True)
    model.qlip_cfg = info.model_cfg
    model.tokenizer = CLIPBPETokenizer(
        context_length=cfg['text_encoder']['max_text_len'])
    return model.eval()
