"""An independent re-statement of QLIP's released model (NVlabs/QLIP
``modeling_qlip.py``, ``rope.py``, ``bsq.py``) for parity tests.

Written from the official code's facts, in plain torch and deliberately
without mmvlp's layers: separate q/k/v projections, explicit matmul
attention with additive masks, the official module names (so its
``state_dict`` has exactly the official keys), and the official ``config.json``
layout. The official file itself needs ``transformers``, which mmvlp does
not depend on.

Facts restated here:

- vision: ``class_embedding`` (C,), ``patch_embedding`` conv with bias,
  ``position_embedding`` (N + 1 rows); no LayerNorm before the blocks;
  ``post_layernorm`` on the CLS output only (always applied); patch tokens
  go unnormalised to ``quant_embed`` (Linear -> GELU -> Linear), are
  l2-normalised (``quantizer_l2_norm``), signed (``> 0`` -> +1, else -1),
  scaled by ``1/sqrt(L)`` and sent through ``quant_embed_post``; token ids
  are big-endian (dim 0 most significant);
- layers: pre-LN, ``q`` scaled by ``head_dim ** -0.5`` before the rotary
  embedding, ``inner_attn_ln`` before ``out_proj`` with Sub-LN, MLP
  ``fc1 -> act -> ffn_ln -> fc2`` or SwiGLU ``w3(ffn_ln(silu(w1 x) * w2
  x))``;
- rotary: per head, ``dim = head_dim // 2`` per axis, frequencies ``theta **
  -(arange(0, dim, 2) / dim)`` on positions ``arange(g) / g * 16``, each
  repeated twice (interleaved), row angles then column angles, tokens in
  row-major order, rotation of adjacent pairs; the vision encoder skips the
  CLS token (shift 1), the decoder rotates every token (shift 0);
- decoder: ``position_embeddings`` (1, N, C) added to the latents, blocks,
  ``norm``, ``ffn`` = Linear -> Tanh, ``conv_out`` Linear to ``3 p p``
  features ordered (channel, row, column);
- text: token + position embeddings, causal mask, ``final_layer_norm``,
  the feature at the first eos token (at the largest id when eos is 2);
- top: ``visual_projection`` / ``text_projection`` (biases from the config),
  embeddings l2-normalised, ``logits_per_image = exp(logit_scale) * img @
  text.T``.
"""
import json
import math
import os.path as osp
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTS = {
    'gelu': F.gelu,
    'quick_gelu': lambda x: x * torch.sigmoid(1.702 * x),
    'gelu_pytorch_tanh': lambda x: F.gelu(x, approximate='tanh'),
}


def rope_table(grid: int, half_head_dim: int, pt_seq_len: int = 16,
               theta: float = 10000.):
    """The official freqs_cos / freqs_sin buffers, ``(grid*grid, 2 * dim)``,
    built position by position."""
    dim = half_head_dim
    freqs = [theta ** (-(2 * k) / dim) for k in range(dim // 2)]
    rows = []
    for i in range(grid):
        for j in range(grid):
            ti = i / grid * pt_seq_len
            tj = j / grid * pt_seq_len
            row = [ti * f for f in freqs for _ in range(2)]
            col = [tj * f for f in freqs for _ in range(2)]
            rows.append(row + col)
    angles = torch.tensor(rows, dtype=torch.float64)
    return angles.cos().float(), angles.sin().float()


class Rope(nn.Module):

    def __init__(self, grid: int, half_head_dim: int) -> None:
        super().__init__()
        cos, sin = rope_table(grid, half_head_dim)
        self.register_buffer('freqs_cos', cos)
        self.register_buffer('freqs_sin', sin)

    def forward(self, t):
        pairs = t.reshape(*t.shape[:-1], -1, 2)
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).reshape(
            t.shape)
        return t * self.freqs_cos + turned * self.freqs_sin


class Attention(nn.Module):

    def __init__(self, cfg: dict, rope=None, shift: int = 1) -> None:
        super().__init__()
        dims = cfg['hidden_size']
        self.heads = cfg['num_attention_heads']
        self.head_dim = dims // self.heads
        self.q_proj = nn.Linear(dims, dims, bias=cfg['q_bias'])
        self.k_proj = nn.Linear(dims, dims, bias=cfg['k_bias'])
        self.v_proj = nn.Linear(dims, dims, bias=cfg['v_bias'])
        self.inner_attn_ln = nn.LayerNorm(
            dims, eps=cfg['layer_norm_eps']) if cfg['subln'] else \
            nn.Identity()
        self.out_proj = nn.Linear(dims, dims)
        self.rope = rope
        self.shift = shift

    def forward(self, x, mask=None):
        b, n, c = x.shape

        def heads(t):
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        q = heads(self.q_proj(x) * self.head_dim**-0.5)
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        if self.rope is not None:
            s = self.shift
            q = torch.cat([q[:, :, :s], self.rope(q[:, :, s:])], dim=2)
            k = torch.cat([k[:, :, :s], self.rope(k[:, :, s:])], dim=2)
        weights = q @ k.transpose(-1, -2)
        if mask is not None:
            weights = weights + mask
        out = weights.softmax(-1) @ v
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.out_proj(self.inner_attn_ln(out))


class MLP(nn.Module):

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        dims, hidden = cfg['hidden_size'], cfg['intermediate_size']
        self.act = ACTS[cfg['hidden_act']]
        self.fc1 = nn.Linear(dims, hidden)
        self.fc2 = nn.Linear(hidden, dims)
        self.ffn_ln = nn.LayerNorm(
            hidden, eps=cfg['layer_norm_eps']) if cfg['subln'] else \
            nn.Identity()

    def forward(self, x):
        return self.fc2(self.ffn_ln(self.act(self.fc1(x))))


class SwiGLU(nn.Module):

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        dims, hidden = cfg['hidden_size'], cfg['intermediate_size']
        self.w1 = nn.Linear(dims, hidden)
        self.w2 = nn.Linear(dims, hidden)
        self.w3 = nn.Linear(hidden, dims)
        self.ffn_ln = nn.LayerNorm(
            hidden, eps=cfg['layer_norm_eps']) if cfg['subln'] else \
            nn.Identity()

    def forward(self, x):
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Layer(nn.Module):

    def __init__(self, cfg: dict, rope=None, shift: int = 1) -> None:
        super().__init__()
        dims, eps = cfg['hidden_size'], cfg['layer_norm_eps']
        self.layer_norm1 = nn.LayerNorm(dims, eps=eps)
        self.self_attn = Attention(cfg, rope, shift)
        self.layer_norm2 = nn.LayerNorm(dims, eps=eps)
        self.mlp = SwiGLU(cfg) if cfg['swiglu'] else MLP(cfg)

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):

    def __init__(self, cfg: dict, rope=None, shift: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Layer(cfg, rope, shift) for _ in range(cfg['num_hidden_layers']))

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


def _rope_for(cfg: dict):
    if not cfg['rope']:
        return None
    grid = cfg['image_size'] // cfg['patch_size']
    return Rope(grid, cfg['hidden_size'] // cfg['num_attention_heads'] // 2)


class VisionEmbeddings(nn.Module):

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        dims, patch = cfg['hidden_size'], cfg['patch_size']
        self.class_embedding = nn.Parameter(torch.randn(dims))
        self.patch_embedding = nn.Conv2d(cfg['num_channels'], dims, patch,
                                         patch, bias=True)
        grid = cfg['image_size'] // patch
        self.position_embedding = nn.Embedding(grid * grid + 1, dims)

    def forward(self, pixels):
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(pixels.shape[0], 1, -1)
        return torch.cat([cls, patches], 1) + self.position_embedding.weight


def _mlp(i: int, hidden: int, o: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([('c_fc', nn.Linear(i, hidden)),
                                      ('gelu', nn.GELU()),
                                      ('c_proj', nn.Linear(hidden, o))]))


class VisionModel(nn.Module):

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg
        dims = cfg['hidden_size']
        self.embeddings = VisionEmbeddings(cfg)
        self.rope = _rope_for(cfg)
        self.encoder = Encoder(cfg, self.rope, shift=1)
        self.post_layernorm = nn.LayerNorm(dims, eps=cfg['layer_norm_eps'])
        q = cfg['quantizer_cfg']
        self.code_dims = q['embed_dim']
        if cfg['quantizer_embed_type'] == 'mlp':
            post = cfg['hidden_size_post_q'] or dims
            self.quant_embed = _mlp(dims, dims, self.code_dims)
            self.quant_embed_post = _mlp(self.code_dims, post, post)
        else:
            self.quant_embed = self.quant_embed_post = nn.Identity()

    def forward(self, pixels):
        hidden = self.encoder(self.embeddings(pixels))
        pooled = self.post_layernorm(hidden[:, 0])
        h = self.quant_embed(hidden[:, 1:])
        if self.cfg['quantizer_l2_norm']:
            h = F.normalize(h, dim=-1)
        signs = torch.where(h > 0, 1., -1.)
        weights = torch.tensor([2**(self.code_dims - 1 - i)
                                for i in range(self.code_dims)])
        indices = ((signs > 0).long() * weights).sum(-1)
        latents = self.quant_embed_post(signs / math.sqrt(self.code_dims))
        return pooled, latents, indices


class VisionDecoder(nn.Module):

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = cfg['image_size'] // cfg['patch_size']
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, self.grid**2, cfg['hidden_size']))
        self.rope = _rope_for(cfg)
        self.norm = nn.LayerNorm(cfg['hidden_size'],
                                 eps=cfg['layer_norm_eps'])
        self.encoder = Encoder(cfg, self.rope, shift=0)
        self.ffn = nn.Sequential(
            nn.Linear(cfg['hidden_size'], cfg['intermediate_size']),
            nn.Tanh())
        p = cfg['patch_size']
        self.conv_out = nn.Linear(cfg['intermediate_size'], 3 * p * p)

    def forward(self, latents):
        x = self.encoder(self.position_embeddings + latents)
        feats = self.conv_out(self.ffn(self.norm(x)))
        b, g, p = feats.shape[0], self.grid, self.cfg['patch_size']
        out = torch.zeros(b, 3, g * p, g * p)
        for index in range(g * g):
            row, col = divmod(index, g)
            out[:, :, row * p:(row + 1) * p, col * p:(col + 1) * p] = \
                feats[:, index].view(b, 3, p, p)
        return out


class TextEmbeddings(nn.Module):

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg['vocab_size'],
                                            cfg['hidden_size'])
        self.position_embedding = nn.Embedding(
            cfg['max_position_embeddings'], cfg['hidden_size'])

    def forward(self, ids):
        return self.token_embedding(ids) + \
            self.position_embedding.weight[:ids.shape[1]]


class TextModel(nn.Module):

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = TextEmbeddings(cfg)
        self.encoder = Encoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg['hidden_size'],
                                             eps=cfg['layer_norm_eps'])

    def forward(self, ids):
        n = ids.shape[1]
        mask = torch.full((n, n), torch.finfo(torch.float32).min).triu(1)
        hidden = self.final_layer_norm(self.encoder(self.embeddings(ids),
                                                    mask))
        eos = self.cfg['eos_token_id']
        if eos == 2:
            position = ids.argmax(-1)
        else:
            position = (ids == eos).int().argmax(-1)
        return hidden[torch.arange(ids.shape[0]), position]


class QLIPReference(nn.Module):
    """The whole model; ``forward`` returns the official outputs."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config
        self.text_model = TextModel(config['text_config'])
        self.vision_model = VisionModel(config['vision_config'])
        self.vision_decoder = VisionDecoder(config['decoder_config'])
        dim = config['projection_dim']
        self.visual_projection = nn.Linear(
            config['vision_config']['hidden_size'], dim,
            bias=config['vision_projection_bias'])
        self.text_projection = nn.Linear(
            config['text_config']['hidden_size'], dim,
            bias=config['text_projection_bias'])
        self.logit_scale = nn.Parameter(
            torch.tensor(config['logit_scale_init_value']))

    @torch.no_grad()
    def forward(self, ids, pixels):
        pooled, latents, indices = self.vision_model(pixels)
        image = F.normalize(self.visual_projection(pooled), dim=-1)
        text = F.normalize(self.text_projection(self.text_model(ids)),
                           dim=-1)
        logits_per_image = self.logit_scale.exp() * image @ text.t()
        return dict(image_embeds=image, text_embeds=text,
                    logits_per_image=logits_per_image,
                    reconstructions=self.vision_decoder(latents),
                    indices=indices)


def tower_config(**overrides) -> dict:
    """A tower config with every key the official config classes save."""
    cfg = dict(
        hidden_size=24, intermediate_size=40, projection_dim=16,
        num_hidden_layers=2, num_attention_heads=2, num_channels=3,
        image_size=20, patch_size=4, hidden_act='gelu', layer_norm_eps=1e-5,
        attention_dropout=0.0, initializer_range=0.02,
        initializer_factor=1.0, q_bias=True, k_bias=True, v_bias=True,
        subln=False, swiglu=False, rope=False, post_layernorm=False)
    cfg.update(overrides)
    return cfg


def qlip_config(vision: dict, decoder: dict, text: dict,
                **top) -> dict:
    """The ``config.json`` dict of a ``QLIPModel``."""
    cfg = dict(architectures=['QLIPModel'], model_type='clip',
               projection_dim=12, logit_scale_init_value=2.6592,
               vision_projection_bias=True, text_projection_bias=True,
               initializer_factor=1.0, torch_dtype='float32',
               text_config=text, vision_config=vision,
               decoder_config=decoder)
    cfg.update(top)
    return cfg


def randomize(model: nn.Module, seed: int = 0) -> None:
    """Random values for every weight (LayerNorms and biases included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.3 if 'embedding' in name or param.dim() < 2 else \
                param.shape[-1]**-0.5
            param.copy_(torch.randn(param.shape, generator=gen) * scale)
            if name.endswith('norm.weight') or 'layer_norm' in name or \
                    '_ln.weight' in name or 'layernorm.weight' in name:
                param.add_(1.)


def save_hf(model: QLIPReference, folder: str, fmt: str = 'safetensors'
            ) -> None:
    """Write ``config.json`` and the weights as the official code saves
    them (``save_pretrained``: shared rope buffers stored once, as
    safetensors' ``save_model`` does) or as a plain ``torch.save`` of the
    full state dict (``fmt='bin'``)."""
    with open(osp.join(folder, 'config.json'), 'w') as f:
        json.dump(model.config, f, indent=2)
    if fmt == 'safetensors':
        from safetensors.torch import save_model
        save_model(model, osp.join(folder, 'model.safetensors'))
    else:
        torch.save(model.state_dict(),
                   osp.join(folder, 'pytorch_model.bin'))
