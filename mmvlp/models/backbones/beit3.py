"""BEiT-3: one Multiway Transformer for images, texts and image-text pairs."""
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from torch.utils.checkpoint import checkpoint

from mmvlp.registry import MODELS
from .beit3_cache import KVCache
from .beit3_checkpoint import (drop_text_only_keys, load_pretrained_beit3,
                               make_vision_only)
from .beit3_sequence import BEiT3SequenceMixin
from ..layers import (MultiwayExperts, MultiwayTransformerLayer, PatchEmbed,
                      grid_of, init_transformer_weights, resize_pos_embed,
                      resolve_arch)

#: Architectures: width, depth, heads, FFN width and default patch size.
ARCH_SETTINGS: Dict[str, Dict[str, int]] = {
    'tiny': dict(embed_dims=192, num_layers=4, num_heads=3,
                 feedforward_channels=768, patch_size=16),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12,
                 feedforward_channels=3072, patch_size=16),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16,
                  feedforward_channels=4096, patch_size=16),
    'giant': dict(embed_dims=1408, num_layers=40, num_heads=16,
                  feedforward_channels=6144, patch_size=14),
}
LAYOUTS = ('decoupled', 'shared')
OUT_TYPES = ('raw', 'cls_token', 'featmap', 'avg_featmap')
POS_EMBED_INITS = ('trunc_normal', 'sincos')


class MultiwayOutput(NamedTuple):
    """What a sequence call of :class:`BEiT3` returns.

    Attributes:
        hidden_states (Tensor): ``(B, N_img + N_txt, C)``, image tokens (CLS
            first) before text tokens.
        num_image_tokens (int): ``N_img`` (0 without images), i.e. the split
            between the modalities.
        padding_mask (Tensor | None): ``(B, N_img + N_txt)``, True at text
            padding; None when there is no padding.
        patch_grid (tuple | None): ``(h, w)`` of the image patches.
    """
    hidden_states: torch.Tensor
    num_image_tokens: int
    padding_mask: Optional[torch.Tensor]
    patch_grid: Optional[Tuple[int, int]]


@MODELS.register_module()
class BEiT3(BEiT3SequenceMixin, BaseModule):
    """BEiT-3 Multiway Transformer backbone.

    Images are embedded by a patch projection with a CLS token and learned
    absolute positions; texts by a token table with their own positions. A
    sequence is ``[CLS, patches | text]`` and every layer routes image tokens to
    vision experts and text tokens to language experts (see
    :class:`~mmvlp.models.layers.MultiwayTransformerLayer`).

    ``forward(images)`` follows mmpretrain's ``VisionTransformer`` contract
    (a tuple of ``out_indices`` outputs shaped by ``out_type``), so mmpretrain,
    mmdet and mmseg configs can use ``type='mmvlp.BEiT3'``.
    :meth:`forward_sequence` encodes images, texts or pairs.

    Args:
        arch (str | dict): ``'tiny'``, ``'base'``, ``'large'``, ``'giant'`` or a
            dict with ``embed_dims``, ``num_layers``, ``num_heads`` and
            ``feedforward_channels``.
        img_size (int | tuple): Input image size. Defaults to 224.
        patch_size (int, optional): Patch side; defaults to the arch's (16, or
            14 for giant).
        in_channels (int): Image channels. Defaults to 3.
        vocab_size (int): Rows of the text embedding table (64010 for
            ``beit3.spm``).
        max_text_len (int): Rows of the text position table, i.e. the longest
            text. Defaults to 1022, the official table without its 2-row
            fairseq offset.
        layout (str): ``'decoupled'`` (released checkpoints: per-modality
            attention and LayerNorms) or ``'shared'`` (the paper: one shared
            attention, FFN experts).
        num_vl_layers (int, optional): Top layers with a vision-language FFN
            expert. Defaults to 3 for ``'shared'`` and 0 for ``'decoupled'``.
        subln (bool): Sub-LN (MAGNETO) norms and init. Defaults to True.
        drop_path_rate (float): Stochastic depth, linearly increasing.
        layer_norm_eps (float): LayerNorm epsilon. Defaults to 1e-5.
        text_mask_token_id (int, optional): Token whose embedding replaces
            text positions in ``text_mask`` (64001 in ``beit3.spm``); None
            when texts are never masked (weights converted from a model with
            another vocabulary; masking then raises).
        out_indices (int | Sequence[int]): Layers whose outputs ``forward``
            returns; negative values count from the end.
        out_type (str): ``'raw'``, ``'cls_token'``, ``'featmap'`` or
            ``'avg_featmap'``.
        final_norm (bool): Apply the final LayerNorm (official fine-tuned
            ImageNet/VQA models have none). Defaults to True.
        dynamic_img_size (bool): Accept other image sizes by resampling the
            position table on the fly. Defaults to False.
        with_cp (bool): Activation checkpointing of each layer
            (non-reentrant). Defaults to False.
        window_size (int): ViTDet-style window attention for large inputs:
            image-only sequences attend within ``window_size`` x
            ``window_size`` patch windows (the grid is padded to multiples;
            the CLS token attends globally and is seen by every window),
            except in the layers of ``global_attn_indexes``. Sequences with
            text always attend globally. 0 (default) turns it off.
        global_attn_indexes (Sequence[int]): Layers that keep global
            attention when ``window_size > 0`` (ViTDet: the last layer of
            each quarter, e.g. ``(2, 5, 8, 11)`` for base); negative values
            count from the end.
        pos_embed_init (str): Start of the (learned) image position table:
            ``'trunc_normal'`` (std 0.02, as BEiT-3) or ``'sincos'`` (2-D
            sine-cosine, as MAE; training from scratch on little data learns
            where patches are much sooner). Checkpoints overwrite it.
        vision_only (bool): Build without the text parts (text table and
            positions, text and vision-language experts) for vision tasks;
            loading a checkpoint then drops them with one log line, and the
            unused mask token is frozen. Defaults to False.
        init_cfg (dict | list, optional): mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``;
            loaded by :func:`~mmvlp.models.backbones.beit3_checkpoint.
            load_pretrained_beit3` (mmvlp pretraining, converted or official
            BEiT-3, DeepSpeed / FSDP checkpoints) with the fit check of
            :mod:`mmvlp.checkpoint.fit`: the patch embedding and the
            layers must load at the model's depth and shapes (``strict=
            True``: every key; ``strict=False``: what fits, logged).
    """
    #: Parts a checkpoint must give (see mmvlp.checkpoint.fit).
    essential_parts = {'patch_embed.': 'the patch embedding',
                       'layers.': 'the transformer layers'}

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: Optional[int] = None,
                 in_channels: int = 3,
                 vocab_size: int = 64010,
                 max_text_len: int = 1022,
                 layout: str = 'decoupled',
                 num_vl_layers: Optional[int] = None,
                 subln: bool = True,
                 drop_path_rate: float = 0.,
                 layer_norm_eps: float = 1e-5,
                 text_mask_token_id: Optional[int] = 64001,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'cls_token',
                 final_norm: bool = True,
                 dynamic_img_size: bool = False,
                 with_cp: bool = False,
                 window_size: int = 0,
                 global_attn_indexes: Sequence[int] = (),
                 pos_embed_init: str = 'trunc_normal',
                 vision_only: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pos_embed_init not in POS_EMBED_INITS:
            raise ValueError(f'Unknown pos_embed_init {pos_embed_init!r}; '
                             f'choose one of {POS_EMBED_INITS}.')
        self.pos_embed_init = pos_embed_init
        settings = resolve_arch(arch, ARCH_SETTINGS, 'BEiT3')
        if layout not in LAYOUTS:
            raise ValueError(f'Unknown BEiT3 layout {layout!r}; choose one of '
                             f'{LAYOUTS}.')
        if out_type not in OUT_TYPES:
            raise ValueError(f'Unknown out_type {out_type!r}; choose one of '
                             f'{OUT_TYPES}.')
        self.embed_dims = settings['embed_dims']
        self.num_layers = settings['num_layers']
        self.num_heads = settings['num_heads']
        self.feedforward_channels = settings['feedforward_channels']
        self.patch_size = patch_size or settings.get('patch_size', 16)
        self.layout = layout
        if num_vl_layers is None:
            num_vl_layers = 3 if layout == 'shared' else 0
        if not 0 <= num_vl_layers <= self.num_layers:
            raise ValueError(f'num_vl_layers must be in [0, {self.num_layers}]'
                             f', got {num_vl_layers}.')
        self.num_vl_layers = num_vl_layers
        self.vocab_size = vocab_size
        self.max_text_len = max_text_len
        if text_mask_token_id is not None and \
                not 0 <= text_mask_token_id < vocab_size:
            raise ValueError(f'text_mask_token_id {text_mask_token_id} is '
                             f'outside the vocabulary [0, {vocab_size}); '
                             'set it to the mask id of your tokenizer, or '
                             'None when texts are never masked.')
        self.text_mask_token_id = text_mask_token_id
        self.subln = subln
        self.out_type = out_type
        self.final_norm = final_norm
        self.dynamic_img_size = dynamic_img_size
        self.with_cp = with_cp

        self.img_size = to_2tuple(img_size)
        self.patch_grid = grid_of(self.img_size, self.patch_size)
        dims = self.embed_dims

        # Embeddings.
        self.patch_embed = PatchEmbed(self.patch_size, in_channels, dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dims))
        num_patches = self.patch_grid[0] * self.patch_grid[1]
        self.pos_embed_vision = nn.Parameter(
            torch.zeros(1, 1 + num_patches, dims))
        self.text_embed = nn.Embedding(vocab_size, dims)
        self.pos_embed_text = nn.Parameter(torch.zeros(1, max_text_len, dims))

        # Layers.
        if window_size < 0:
            raise ValueError(f'window_size must be >= 0 (0 = global '
                             f'attention), got {window_size}.')
        self.window_size = window_size
        self.global_attn_indexes = self._resolve_layers(
            global_attn_indexes, 'global_attn_indexes')
        dpr = [drop_path_rate * i / max(1, self.num_layers - 1)
               for i in range(self.num_layers)]
        first_vl = self.num_layers - num_vl_layers
        self.layers = nn.ModuleList([
            MultiwayTransformerLayer(
                dims,
                self.num_heads,
                self.feedforward_channels,
                multiway_attn=layout == 'decoupled',
                multiway_ffn=True,
                vl_expert=i >= first_vl,
                subln=subln,
                drop_path_rate=dpr[i],
                layer_norm_eps=layer_norm_eps,
                window_size=0 if i in self.global_attn_indexes else
                window_size) for i in range(self.num_layers)
        ])
        self.norm = MultiwayExperts({
            'vision': nn.LayerNorm(dims, eps=layer_norm_eps),
            'text': nn.LayerNorm(dims, eps=layer_norm_eps)
        }) if final_norm else None

        self.out_indices = self._resolve_layers(out_indices, 'out_indices')

        self._init_from_scratch()
        self.vision_only = vision_only
        if vision_only:
            make_vision_only(self)

    def _resolve_layers(self, indices: Union[int, Sequence[int]],
                        name: str) -> List[int]:
        """Layer indices with negatives counted from the end, checked."""
        if isinstance(indices, int):
            indices = [indices]
        resolved = []
        for index in indices:
            layer = index + self.num_layers if index < 0 else index
            if not 0 <= layer < self.num_layers:
                raise ValueError(f'{name} entry {index} is outside the '
                                 f'{self.num_layers} layers.')
            resolved.append(layer)
        return resolved

    # ------------------------------------------------------------------
    # Initialisation and loading
    # ------------------------------------------------------------------
    def _init_from_scratch(self) -> None:
        """Truncated-normal init, then MAGNETO's Sub-LN gain.

        Linear and patch weights get ``trunc_normal(std=0.02)`` with zero bias,
        LayerNorms ones/zeros, the token and position tables ``std=0.02``.
        With Sub-LN, ``fc1``, ``fc2``, the attention output projection and the
        value part of ``qkv`` are multiplied by ``sqrt(log(2 * num_layers))``
        as in torchscale.
        """
        init_transformer_weights(self)
        for param in (self.cls_token, self.mask_token, self.pos_embed_vision,
                      self.pos_embed_text, self.text_embed.weight):
            nn.init.trunc_normal_(param, std=.02)
        if self.pos_embed_init == 'sincos':
            with torch.no_grad():
                self.pos_embed_vision[:, 1:] = \
                    build_2d_sincos_position_embedding(
                        self.patch_grid[::-1], self.embed_dims)
        if not self.subln:
            return
        gain = math.sqrt(math.log(2 * self.num_layers))
        dims = self.embed_dims
        with torch.no_grad():
            for name, param in self.layers.named_parameters():
                if '.ffn.' in name or '.attn.proj.' in name:
                    if '.norm.' not in name:
                        param.mul_(gain)
                elif '.attn.qkv.' in name:
                    param[2 * dims:].mul_(gain)  # the value projection

    def init_weights(self) -> None:
        """Initialise, loading ``init_cfg`` of type ``Pretrained`` with
        mmvlp's loader (other init configs run as in mmengine)."""
        original = self.init_cfg
        cfgs = [] if original is None else list(
            original if isinstance(original, (list, tuple)) else [original])
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        if not pretrained or self._is_init:
            return super().init_weights()
        self.init_cfg = [c for c in cfgs if c not in pretrained] or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = original
        options = {k: v for k, v in pretrained[-1].items() if k != 'type'}
        load_pretrained_beit3(self, **options)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Resample position tables of other sizes before loading; a
        vision-only model drops the checkpoint's text parts. Empty tensors
        (the placeholders of DeepSpeed ZeRO-3, which restores the weights
        from its optimizer partitions) are loaded as they are."""
        if getattr(self, 'vision_only', False):
            drop_text_only_keys(state_dict, prefix)

        def table(name):
            value = state_dict.get(prefix + name)
            return value if value is not None and value.dim() == 3 else None

        key = prefix + 'pos_embed_vision'
        if table('pos_embed_vision') is not None and state_dict[key].shape \
                != self.pos_embed_vision.shape:
            src_rows = state_dict[key].shape[1] - 1
            side = int(math.isqrt(src_rows))
            if side * side != src_rows:
                raise ValueError(
                    f'{key} has {src_rows} patch rows, which is not a square '
                    'grid, and nothing says which grid it is: load it with '
                    "init_cfg=dict(type='Pretrained', checkpoint=..., "
                    'pos_embed_grid=(h, w)) (or from a checkpoint of '
                    "mmengine's Runner, whose saved config names it), or "
                    f'resize it to {tuple(self.patch_grid)} with '
                    'mmvlp.models.layers.resize_pos_embed first.')
            print_log(
                f'Resize {key} from a {side}x{side} grid to '
                f'{self.patch_grid[0]}x{self.patch_grid[1]} (bicubic; a '
                'square grid, as nothing names another).',
                logger='current')
            state_dict[key] = resize_pos_embed(state_dict[key], (side, side),
                                               self.patch_grid)
        key = prefix + 'pos_embed_text'
        if table('pos_embed_text') is not None and \
                state_dict[key].shape[1] > self.max_text_len:
            print_log(
                f'Keep the first {self.max_text_len} of '
                f'{state_dict[key].shape[1]} rows of {key} '
                f'(max_text_len={self.max_text_len}).',
                logger='current')
            state_dict[key] = state_dict[key][:, :self.max_text_len]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def resize_pos_embed(self, img_size: Union[int, Sequence[int]]) -> None:
        """Resample the vision position table for a new input size, in place.

        Args:
            img_size (int | tuple): The new ``(H, W)``.
        """
        new_grid = grid_of(img_size, self.patch_size)
        resized = resize_pos_embed(self.pos_embed_vision.data,
                                   self.patch_grid, new_grid)
        self.pos_embed_vision = nn.Parameter(resized)
        self.img_size, self.patch_grid = to_2tuple(img_size), new_grid

    # ------------------------------------------------------------------
    # Embedding
    # ------------------------------------------------------------------
    def _embed_images(
            self, images: torch.Tensor,
            vision_mask: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        if images.dim() != 4:
            raise ValueError(f'images must be (B, C, H, W), got shape '
                             f'{tuple(images.shape)}.')
        size = tuple(images.shape[-2:])
        if size != self.img_size and not self.dynamic_img_size:
            raise ValueError(
                f'BEiT3 was built for img_size={self.img_size} but got '
                f'{size[0]}x{size[1]} images. Set img_size to the input size '
                '(the position table is resized when loading), call '
                'resize_pos_embed(), or set dynamic_img_size=True.')
        grid_of(size, self.patch_size)  # raises if not divisible
        x, grid = self.patch_embed(images)
        if vision_mask is not None:
            vision_mask = vision_mask.flatten(1)
            if vision_mask.shape != x.shape[:2]:
                raise ValueError(
                    f'vision_mask must have one entry per patch, '
                    f'{tuple(x.shape[:2])}, got {tuple(vision_mask.shape)}.')
            x = torch.where(vision_mask.bool().unsqueeze(-1),
                            self.mask_token.to(x.dtype), x)
        pos = self.pos_embed_vision
        if grid != self.patch_grid:
            pos = resize_pos_embed(pos, self.patch_grid, grid)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype),
                       x], dim=1)
        return x + pos, grid

    def _embed_text(self, text_ids: torch.Tensor,
                    text_mask: Optional[torch.Tensor],
                    start: int = 0) -> torch.Tensor:
        if text_ids.dim() != 2 or text_ids.dtype not in (torch.long,
                                                         torch.int):
            raise ValueError(f'text_ids must be an integer (B, L) tensor, got '
                             f'{text_ids.dtype} {tuple(text_ids.shape)}.')
        length = text_ids.shape[1]
        if start + length > self.max_text_len:
            raise ValueError(
                f'Text of {start + length} tokens is longer than max_text_len='
                f'{self.max_text_len}; truncate it or build BEiT3 with a '
                'larger max_text_len.')
        if text_mask is not None:
            if self.text_mask_token_id is None:
                raise ValueError(
                    'text_mask needs a mask token, but this BEiT3 has '
                    'text_mask_token_id=None; set it to the mask id of the '
                    'text tokenizer.')
            if text_mask.shape != text_ids.shape:
                raise ValueError(f'text_mask must have the shape of text_ids '
                                 f'{tuple(text_ids.shape)}, got '
                                 f'{tuple(text_mask.shape)}.')
            text_ids = text_ids.masked_fill(text_mask.bool(),
                                            self.text_mask_token_id)
        return self.text_embed(text_ids) + \
            self.pos_embed_text[:, start:start + length]

    # ------------------------------------------------------------------
    # Encoding
    # ------------------------------------------------------------------
    def encode(self,
               images: Optional[torch.Tensor] = None,
               text_ids: Optional[torch.Tensor] = None,
               text_padding_mask: Optional[torch.Tensor] = None,
               vision_mask: Optional[torch.Tensor] = None,
               text_mask: Optional[torch.Tensor] = None,
               attn_mask: Optional[torch.Tensor] = None,
               out_indices: Sequence[int] = ()
               ) -> Tuple[MultiwayOutput, Dict[int, torch.Tensor]]:
        """Encode images, texts or pairs; see :meth:`forward_sequence`.

        Args:
            out_indices (Sequence[int]): Non-negative layer indices whose raw
                (un-normalised) outputs are also returned.

        Returns:
            tuple: A :class:`MultiwayOutput` and a dict from each requested
            layer index to that layer's output.
        """
        if images is None and text_ids is None:
            raise ValueError('BEiT3 needs images, text_ids or both; got '
                             'neither.')
        if text_ids is not None and self.vision_only:
            raise ValueError('This BEiT3 was built with vision_only=True and '
                             'has no text parts; build it with vision_only='
                             'False to encode texts.')
        parts, grid = [], None
        if images is not None:
            image_tokens, grid = self._embed_images(images, vision_mask)
            parts.append(image_tokens)
        split = parts[0].shape[1] if parts else 0
        padding = None
        if text_ids is not None:
            parts.append(self._embed_text(text_ids, text_mask))
            if text_padding_mask is not None:
                if text_padding_mask.shape != text_ids.shape:
                    raise ValueError(
                        'text_padding_mask must have the shape of text_ids '
                        f'{tuple(text_ids.shape)}, got '
                        f'{tuple(text_padding_mask.shape)}.')
                padding = text_padding_mask.bool()
                if split:
                    padding = F.pad(padding, (split, 0), value=False)
        elif text_padding_mask is not None or text_mask is not None:
            raise ValueError('text_padding_mask/text_mask given without '
                             'text_ids.')
        if images is None and vision_mask is not None:
            raise ValueError('vision_mask given without images.')
        if len(parts) > 1 and parts[0].shape[0] != parts[1].shape[0]:
            raise ValueError(f'images and text_ids have different batch sizes '
                             f'({parts[0].shape[0]} vs {parts[1].shape[0]}).')
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        if padding is not None:
            x = x.masked_fill(padding.unsqueeze(-1), 0.)
        sdpa_mask = self._sdpa_mask(padding, attn_mask, x.shape[1], x.dtype)
        # Window attention (layers built with window_size > 0) applies to
        # image-only sequences; the layers attend globally without a grid.
        window_grid = grid if (self.window_size and text_ids is None
                               and attn_mask is None) else None

        layer_outputs = {}
        for index, layer in enumerate(self.layers):
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(layer, x, split, sdpa_mask, window_grid,
                               use_reentrant=False)
            else:
                x = layer(x, split, sdpa_mask, window_grid)
            if index in out_indices:
                layer_outputs[index] = x
        if self.norm is not None:
            x = self.norm(x, split)
        return MultiwayOutput(x, split, padding, grid), layer_outputs

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Vision-only forward in mmpretrain's ``VisionTransformer`` style.

        Args:
            images (Tensor): ``(B, 3, H, W)``.

        Returns:
            tuple[Tensor]: One output per ``out_indices`` entry, shaped by
            ``out_type``: ``'raw'`` ``(B, N, C)``, ``'cls_token'`` ``(B, C)``,
            ``'featmap'`` ``(B, C, h, w)``, ``'avg_featmap'`` ``(B, C)``. The
            final norm applies to the last layer's output.
        """
        output, layer_outputs = self.encode(
            images=images, out_indices=self.out_indices)
        layer_outputs[self.num_layers - 1] = output.hidden_states
        return tuple(
            self._format(layer_outputs[index], output.patch_grid)
            for index in self.out_indices)

    def _format(self, tokens: torch.Tensor,
                grid: Tuple[int, int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return tokens
        if self.out_type == 'cls_token':
            return tokens[:, 0]
        patches = tokens[:, 1:]
        if self.out_type == 'avg_featmap':
            return patches.mean(dim=1)
        return patches.reshape(tokens.shape[0], *grid,
                               -1).permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------
    # Fine-tuning helpers
    # ------------------------------------------------------------------
    def get_layer_depth(self, param_name: str, prefix: str = '') -> tuple:
        """Layer depth of a parameter for layer-wise learning-rate decay.

        Embeddings (patch, CLS/mask tokens, positions, text table) are depth 0,
        ``layers.i`` is ``i + 1`` and the rest (final norm, anything outside
        the backbone) ``num_layers + 1``.

        Args:
            param_name (str): Parameter name, e.g. ``'backbone.layers.3.ffn'``.
            prefix (str): Prefix of the backbone's parameters in the model.

        Returns:
            tuple[int, int]: ``(layer_depth, num_layers + 2)``.
        """
        total = self.num_layers + 2
        if not param_name.startswith(prefix):
            return total - 1, total
        name = param_name[len(prefix):]
        if name.startswith(('cls_token', 'mask_token', 'pos_embed_',
                            'patch_embed', 'text_embed')):
            return 0, total
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, total
        return total - 1, total

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn activation checkpointing of the layers on or off."""
        self.with_cp = enable


__all__ = ['BEiT3', 'MultiwayOutput', 'KVCache', 'ARCH_SETTINGS']
