"""BEiT-3 masked data modeling on images, texts and image-text pairs."""
import contextlib
import logging
import math
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel

from mmvlp.registry import MODELS, build_scoped
from ..heads import MaskedTokenHead

SOURCES = ('image', 'text', 'pair')
# Largest visual vocabulary the 2**L-way linear head takes by default; above
# it (BSQ/QLIP codes) a factorised head must be chosen.
MAX_LINEAR_VOCAB = 2**16


@MODELS.register_module()
class BEiT3Pretrain(BaseModel):
    """One Multiway backbone trained by masked data modeling.

    * image: predict the visual tokens of masked patches (MIM);
    * text: predict masked text tokens (MLM);
    * pair: both, on an image-text sequence.

    Visual targets come from a frozen tokenizer (any mmvlp tokenizer, e.g.
    ``VQKD`` with ``init_cfg=dict(type='Pretrained', ...)``, or a BSQ /
    QLIP ``BSQViT``) applied to the tokenizer view, or from precomputed token
    ids (``tools/tokenize_images.py``). Binary-code vocabularies (``2**L``
    ids) are predicted through
    :class:`~mmvlp.models.heads.FactorizedTokenHead` (``mim_head``): per bit
    or per group of bits, logged as exact-token accuracy (``acc_mim_*``)
    and per-bit / per-group accuracy (``acc_bit_mim_*``,
    ``acc_group_mim_*``).

    A batch is a dict with any of the keys ``image``, ``text`` and ``pair``:

    * ``image``: ``images`` ``(B, 3, H, W)`` normalised for the backbone,
      ``vision_mask`` ``(B, h, w)`` bool, and ``tokenizer_images`` (raw
      pixels of the tokenizer view) or ``visual_tokens`` ``(B, h, w)``;
    * ``text``: ``masked_text_ids`` ``(B, L)`` (model input),
      ``text_ids`` ``(B, L)`` (labels), ``text_mlm_mask`` ``(B, L)`` bool,
      ``text_padding_mask`` ``(B, L)`` bool;
    * ``pair``: the union of both.

    The tokenizer is named in ``frozen_modules``: under DeepSpeed and FSDP
    mmvlp keeps it out of the engine / FSDP wrapper (whole on every rank,
    fp32, not in checkpoints; it comes from ``tokenizer_checkpoint``), and
    under DeepSpeed half precision ``target_autocast`` is set, so the
    targets are computed as under ``AmpOptimWrapper`` (fp32 weights,
    autocast) with every strategy (``mmvlp.compat.strategies``).

    Args:
        backbone (dict): A ``BEiT3`` config.
        tokenizer (dict, optional): A frozen visual tokenizer config.
        tokenizer_checkpoint (str, optional): Weights loaded into the
            tokenizer when the model is built (strict). Without it (and
            without the tokenizer's ``init_cfg``) the tokenizer stays random
            and a warning says that the targets are random (smoke tests of
            a recipe: ``--cfg-options model.tokenizer_checkpoint=None``).
            Its encoder and codebook must load (else
            :class:`~mmvlp.checkpoint.CheckpointError` with what the file holds
            and the fix).
        tokenizer_strict (bool, optional): None: that check; True: every
            key of the tokenizer; False: load what fits (logged).
        visual_vocab_size (int, optional): Size of the visual vocabulary when
            targets are precomputed (must equal the tokenizer's if both).
        compile_tokenizer (bool): Run the frozen tokenizer's encoder with
            ``torch.compile`` and its weights frozen in (see
            :meth:`~mmvlp.models.tokenizers.BaseVisualTokenizer.
            compile_encode`): 10-30 s once per process, then faster targets.
            Defaults to False.
        mim_head (dict, optional): The visual-token head, e.g.
            ``dict(type='FactorizedTokenHead', group_size=1)`` (``in_dims``
            and ``num_bits`` are filled in). Default: the linear
            ``MaskedTokenHead`` over the vocabulary, allowed up to
            ``2**16`` ids.
        loss_weights (dict): Weight per source; sources left out weigh 1.
        data_preprocessor (dict, optional): Batch preparation.
        init_cfg (dict, optional): mmengine init config.
    """
    #: What a checkpoint must give (see mmvlp.checkpoint.fit).
    essential_parts = {'backbone.': 'the BEiT-3 backbone'}
    head_parts = {'mim_head.': 'the visual token head',
                  'mlm_head.': 'the text token head'}

    #: Frozen submodules that sharding strategies keep outside their
    #: wrappers (see the class docstring).
    frozen_modules: Tuple[str, ...] = ('tokenizer', )
    #: Autocast dtype of the tokenizer's forward pass; None follows the
    #: surrounding context (AmpOptimWrapper's autocast, or none).
    target_autocast: Optional[torch.dtype] = None

    def __init__(self,
                 backbone: dict,
                 tokenizer: Optional[dict] = None,
                 tokenizer_checkpoint: Optional[str] = None,
                 tokenizer_strict: Optional[bool] = None,
                 visual_vocab_size: Optional[int] = None,
                 compile_tokenizer: bool = False,
                 mim_head: Optional[dict] = None,
                 loss_weights: Dict[str, float] = dict(
                     image=1., text=1., pair=1.),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        unknown = set(loss_weights) - set(SOURCES)
        if unknown:
            raise ValueError(f'loss_weights keys must be among {SOURCES}, got '
                             f'{sorted(unknown)}.')
        self.loss_weights = {**dict.fromkeys(SOURCES, 1.), **loss_weights}
        self.backbone = build_scoped(MODELS, backbone)
        self.tokenizer = None
        if tokenizer is not None:
            self.tokenizer = build_scoped(MODELS, tokenizer)
            if tokenizer_checkpoint is None and not tokenizer.get('init_cfg'):
                print_log(
                    'BEiT3Pretrain: no tokenizer_checkpoint, so the visual '
                    'tokenizer keeps random weights and the MIM targets are '
                    'random token ids: fine for smoke tests, not for '
                    'pretraining. Set tokenizer_checkpoint to the trained '
                    '(or converted BEiT v2) tokenizer.',
                    logger='current', level=logging.WARNING)
            if tokenizer_checkpoint is not None:
                from mmvlp.checkpoint.loading import load_model_weights
                # The encoder and codebook must load; a decoder may be
                # absent (docs/reliability.md).
                load_model_weights(self.tokenizer, tokenizer_checkpoint,
                                   purpose='encode', strict=tokenizer_strict,
                                   what='tokenizer_checkpoint')
            self.tokenizer.requires_grad_(False)
            self.tokenizer.eval()
            self.tokenizer.compile_encode(compile_tokenizer)
            vocab = self.tokenizer.vocab_size
            if visual_vocab_size is not None and visual_vocab_size != vocab:
                raise ValueError(
                    f'visual_vocab_size={visual_vocab_size} does not match '
                    f'the tokenizer\'s vocab_size={vocab}; drop '
                    'visual_vocab_size or fix it.')
            grid = tuple(self.tokenizer.encoder.patch_grid)
            if grid != tuple(self.backbone.patch_grid):
                raise ValueError(
                    f'The tokenizer yields a {grid[0]}x{grid[1]} token map '
                    f'but the backbone has {self.backbone.patch_grid[0]}x'
                    f'{self.backbone.patch_grid[1]} patches; set the '
                    'tokenizer view size (TwoViewCrop second_size) so both '
                    'grids agree.')
            visual_vocab_size = vocab
        elif compile_tokenizer:
            raise ValueError('compile_tokenizer=True needs a tokenizer; the '
                             'targets are precomputed here, so drop it.')
        if visual_vocab_size is None:
            raise ValueError('BEiT3Pretrain needs a tokenizer or '
                             'visual_vocab_size (precomputed tokens).')
        dims = self.backbone.embed_dims
        self.mim_head = self._build_mim_head(mim_head, dims,
                                             visual_vocab_size)
        self.mlm_head = MaskedTokenHead(dims, self.backbone.vocab_size)

    @staticmethod
    def _build_mim_head(cfg: Optional[dict], dims: int, vocab: int):
        if cfg is None:
            if vocab > MAX_LINEAR_VOCAB:
                raise ValueError(
                    f'A linear head over {vocab} visual ids would have '
                    f'{vocab * dims / 1e6:.0f}M weights; for binary codes '
                    "(BSQ/QLIP) set mim_head=dict(type='FactorizedTokenHead'"
                    ', group_size=1) (per bit) or a larger group_size.')
            return MaskedTokenHead(dims, vocab)
        cfg = dict(cfg)
        cfg.setdefault('in_dims', dims)
        if str(cfg.get('type', '')).endswith('FactorizedTokenHead'):
            bits = round(math.log2(vocab))
            if 2**bits != vocab:
                raise ValueError(
                    f'FactorizedTokenHead needs a 2**L vocabulary (binary '
                    f'codes), got {vocab} visual ids.')
            if cfg.setdefault('num_bits', bits) != bits:
                raise ValueError(
                    f"mim_head num_bits={cfg['num_bits']} does not match the "
                    f'visual vocabulary 2**{bits}.')
        else:
            cfg.setdefault('vocab_size', vocab)
        head = build_scoped(MODELS, cfg)
        if head.vocab_size != vocab:
            raise ValueError(f'mim_head predicts {head.vocab_size} ids, the '
                             f'visual vocabulary has {vocab}.')
        return head

    def train(self, mode: bool = True) -> 'BEiT3Pretrain':
        """The tokenizer stays frozen in eval mode."""
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()
        return self

    def _visual_targets(self, batch: dict) -> torch.Tensor:
        if 'visual_tokens' in batch:
            return batch['visual_tokens'].flatten(1)
        if self.tokenizer is None:
            raise ValueError('The batch has no visual_tokens and the model '
                             'no tokenizer to compute them.')
        images = batch['tokenizer_images']
        context = contextlib.nullcontext()
        if self.target_autocast is not None:
            context = torch.autocast(images.device.type,
                                     dtype=self.target_autocast)
        # Raw pixels (integers up to 255) survive a bf16/fp16 input cast
        # exactly; the tokenizer computes from fp32 inputs.
        with context:
            return self.tokenizer.encode(images.float()).flatten(1)

    def _mim(self, hidden: torch.Tensor, batch: dict, source: str
             ) -> Dict[str, torch.Tensor]:
        """Weighted MIM loss and accuracies of one source."""
        mask = batch['vision_mask'].flatten(1).bool()
        patches = hidden[:, 1:1 + mask.shape[1]]
        loss, acc, extra = self.mim_head.loss(
            patches, mask, self._visual_targets(batch), return_metrics=True)
        out = {f'loss_mim_{source}': loss * self.loss_weights[source],
               f'acc_mim_{source}': acc}
        out.update({f'{name}_mim_{source}': value
                    for name, value in extra.items()})
        return out

    def _mlm(self, hidden: torch.Tensor, batch: dict):
        return self.mlm_head.loss(hidden, batch['text_mlm_mask'].bool(),
                                  batch['text_ids'])

    def loss(self, batch: Dict[str, dict]) -> Dict[str, torch.Tensor]:
        """Weighted losses and accuracies per source."""
        if not any(source in batch for source in SOURCES):
            raise ValueError(f'A pretraining batch needs at least one of '
                             f'{SOURCES}; got {sorted(batch)}.')
        losses = {}
        if 'image' in batch:
            part = batch['image']
            hidden = self.backbone.forward_sequence(
                images=part['images'], vision_mask=part['vision_mask'])
            losses.update(self._mim(hidden, part, 'image'))
        if 'text' in batch:
            part = batch['text']
            hidden = self.backbone.forward_sequence(
                text_ids=part['masked_text_ids'],
                text_padding_mask=part.get('text_padding_mask'))
            loss, acc = self._mlm(hidden, part)
            losses.update(loss_mlm_text=loss * self.loss_weights['text'],
                          acc_mlm_text=acc)
        if 'pair' in batch:
            part = batch['pair']
            output, _ = self.backbone.encode(
                images=part['images'], vision_mask=part['vision_mask'],
                text_ids=part['masked_text_ids'],
                text_padding_mask=part.get('text_padding_mask'))
            hidden, split = output.hidden_states, output.num_image_tokens
            weight = self.loss_weights['pair']
            losses.update(self._mim(hidden[:, :split], part, 'pair'))
            mlm, mlm_acc = self._mlm(hidden[:, split:], part)
            losses.update(loss_mlm_pair=mlm * weight, acc_mlm_pair=mlm_acc)
        return losses

    def forward(self, inputs: Dict[str, dict], data_samples=None,
                mode: str = 'loss'):
        """mmengine entry point; only ``'loss'`` is meaningful here."""
        if mode != 'loss':
            raise ValueError(f'BEiT3Pretrain supports mode="loss" only, got '
                             f'{mode!r}; use the backbone for features.')
        return self.loss(inputs)
