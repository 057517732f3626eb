"""A CLIP-style causal text transformer built from mmvlp's shared layers.

The text tower of QLIP (and of OpenAI CLIP / EVA-CLIP): token + learned
position embeddings, pre-LN blocks under a causal mask, a final LayerNorm,
and the sentence feature read at the end-of-text token.
"""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmvlp.registry import MODELS
from ..layers import (MultiwayTransformerLayer, init_transformer_weights,
                      resolve_arch)

TEXT_ARCHS = {
    'base': dict(embed_dims=512, num_layers=12, num_heads=8,
                 feedforward_channels=2048),
    'large': dict(embed_dims=768, num_layers=12, num_heads=12,
                  feedforward_channels=3072),
}
POOLS = ('eos', 'argmax')


@MODELS.register_module()
class CLIPTextTransformer(BaseModule):
    """Causal text transformer with end-of-text pooling.

    Args:
        arch (str | dict): ``'base'`` (512 wide, 12 layers, 8 heads),
            ``'large'`` or a dict with ``embed_dims``, ``num_layers``,
            ``num_heads``, ``feedforward_channels``.
        vocab_size (int): Token ids (49408 for the CLIP BPE vocabulary).
        max_text_len (int): Positions (77 in CLIP).
        eos_token_id (int): End-of-text id (49407 in CLIP BPE).
        pool (str): ``'eos'``: the feature at the first ``eos_token_id`` of
            each sequence; ``'argmax'``: at the largest id (old OpenAI CLIP
            exports, whose end-of-text is the largest id).
        layer_norm_eps (float): LayerNorm epsilon.
        ffn_act (str): FFN activation (``'gelu'``, ``'quick_gelu'``,
            ``'gelu_tanh'``, ``'swiglu'``).
        subln (bool): Sub-LN norms inside attention and FFN.
        qkv_bias (bool): Bias on the query/key/value projection.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 vocab_size: int = 49408,
                 max_text_len: int = 77,
                 eos_token_id: int = 49407,
                 pool: str = 'eos',
                 layer_norm_eps: float = 1e-5,
                 ffn_act: str = 'gelu',
                 subln: bool = False,
                 qkv_bias: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pool not in POOLS:
            raise ValueError(f'pool must be one of {POOLS}, got {pool!r}.')
        settings = resolve_arch(arch, TEXT_ARCHS, 'CLIPTextTransformer')
        self.embed_dims = dims = settings['embed_dims']
        self.num_layers = settings['num_layers']
        self.vocab_size = vocab_size
        self.max_text_len = max_text_len
        self.eos_token_id = eos_token_id
        self.pool = pool
        self.token_embed = nn.Embedding(vocab_size, dims)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_text_len, dims))
        self.layers = nn.ModuleList([
            MultiwayTransformerLayer(
                dims,
                settings['num_heads'],
                settings['feedforward_channels'],
                multiway_attn=False,
                multiway_ffn=False,
                subln=subln,
                layer_norm_eps=layer_norm_eps,
                qkv_bias=qkv_bias,
                ffn_act=ffn_act) for _ in range(self.num_layers)
        ])
        self.norm = nn.LayerNorm(dims, eps=layer_norm_eps)
        init_transformer_weights(self)
        nn.init.normal_(self.token_embed.weight, std=.02)
        nn.init.normal_(self.pos_embed, std=.01)

    def _attn_mask(self, length: int,
                   text_padding_mask: Optional[torch.Tensor],
                   device) -> torch.Tensor:
        """Boolean SDPA mask (True = may attend): causal, padding keys
        removed, and every token always sees itself (so no row is empty)."""
        causal = torch.ones(length, length, dtype=torch.bool,
                            device=device).tril()
        if text_padding_mask is None:
            return causal
        mask = causal & ~text_padding_mask.bool()[:, None, None, :]
        return mask | torch.eye(length, dtype=torch.bool, device=device)

    def forward_sequence(
            self,
            text_ids: torch.Tensor,
            text_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Token features after the final LayerNorm.

        Args:
            text_ids (Tensor): ``(B, L)`` token ids, ``L <= max_text_len``.
            text_padding_mask (Tensor, optional): ``(B, L)``, True at
                padding (ignored as keys; under the causal mask padding after
                the end-of-text token does not change the pooled feature).

        Returns:
            Tensor: ``(B, L, C)``.
        """
        length = text_ids.shape[1]
        if length > self.max_text_len:
            raise ValueError(
                f'Texts of {length} tokens exceed max_text_len='
                f'{self.max_text_len}; truncate them in the tokenizer.')
        if text_ids.numel() and (int(text_ids.min()) < 0 or
                                 int(text_ids.max()) >= self.vocab_size):
            raise ValueError(
                f'Text ids must be in [0, {self.vocab_size}); got '
                f'[{int(text_ids.min())}, {int(text_ids.max())}]. Use the '
                'tokenizer that matches this text tower.')
        x = self.token_embed(text_ids) + self.pos_embed[:, :length]
        mask = self._attn_mask(length, text_padding_mask, x.device)
        for layer in self.layers:
            x = layer(x, 0, attn_mask=mask)
        return self.norm(x)

    def pooled_positions(self, text_ids: torch.Tensor) -> torch.Tensor:
        """``(B,)`` positions whose features are the sentence features."""
        if self.pool == 'argmax':
            return text_ids.argmax(dim=-1)
        is_eos = text_ids == self.eos_token_id
        missing = ~is_eos.any(dim=-1)
        if missing.any():
            rows = missing.nonzero().flatten().tolist()
            raise ValueError(
                f'Texts {rows[:8]} have no end-of-text token '
                f'(id {self.eos_token_id}); encode them with the CLIP BPE '
                'tokenizer (mmvlp.text.CLIPBPETokenizer), which adds it.')
        return is_eos.int().argmax(dim=-1)

    def forward_pooled(
            self,
            text_ids: torch.Tensor,
            text_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Sentence features ``(B, C)`` (see ``pool``)."""
        hidden = self.forward_sequence(text_ids, text_padding_mask)
        positions = self.pooled_positions(text_ids)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device),
                      positions]

    def forward(self,
                text_ids: torch.Tensor,
                text_padding_mask: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        """Same as :meth:`forward_pooled`."""
        return self.forward_pooled(text_ids, text_padding_mask)
