"""BEiT-3 image captioning: prefix-causal masked language modeling."""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint
from mmpretrain.structures import DataSample

from mmvlp.registry import MODELS
from mmvlp.text import TextTokenizer
from ..backbones.beit3_checkpoint import _resolve_path, extract_state_dict
from ..heads import MaskedTokenHead
from .base import BEiT3TaskModel, stack_field
from .generation import (CachedSteps, FullSteps, beam_search, greedy_search,
                         prefix_causal_mask)


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           smoothing: float) -> torch.Tensor:
    """Per-token cross-entropy against ``1 - smoothing`` on the target and
    ``smoothing / (V - 1)`` on every other token (the official BEiT-3
    captioning loss up to a constant)."""
    logprobs = F.log_softmax(logits.float(), -1)
    target = logprobs.gather(1, targets[:, None]).squeeze(1)
    if not smoothing:
        return -target
    others = (logprobs.sum(-1) - target) / (logits.shape[-1] - 1)
    return -((1 - smoothing) * target + smoothing * others)


@MODELS.register_module()
class BEiT3Captioner(BEiT3TaskModel):
    """Image captioning with BEiT-3, as the official fine-tuning code.

    Training: the caption follows the image tokens under a prefix-causal
    mask (image tokens see the image; a text token sees the image and the
    text up to itself); a share of the caption tokens (``<s>`` excluded,
    ``</s>`` included) is masked in the pipeline (``TextMasking``, 60-70%),
    and the ``mlm_head`` predicts them, with label smoothing and, after
    ``drop_worst_after`` steps, the ``drop_worst_ratio`` largest token
    losses dropped. Inference: the beam search of the official evaluation
    (:func:`~mmvlp.models.multimodal.generation.beam_search`: 3 beams,
    length penalty 0.6 over ``<s>``, the words and the ``</s>`` slot, at
    most ``max_length - 3`` words, also with ``num_beams=1``; no token
    banned) with a preallocated key/value cache: ``<s> [MASK]`` first, then
    ``[previous word, [MASK]]`` per step
    (:mod:`~mmvlp.models.multimodal.generation`).

    Args:
        backbone (dict): A ``BEiT3`` config.
        tokenizer (dict, optional): ``TextTokenizer`` arguments
            (``model_file``, ``style``) to turn ids into text in
            :meth:`predict`; its ``<s>`` / ``</s>`` / ``<pad>`` ids are used.
        max_length (int): Longest generated sequence, ``<s>`` and ``</s>``
            included: the official ``num_max_bpe_tokens`` of the evaluation
            (64, the default; training captions are cut to 32 tokens by the
            pipeline). Captions get at most ``max_length - 3`` words
            (``max_length - 2`` with ``plain_greedy``).
        num_beams (int): Beams (1 is the official search with one beam).
            Defaults to 3.
        length_penalty (float): Beam search length penalty. Defaults to 0.6.
        use_cache (bool): Decode with cached keys/values (False re-encodes
            the whole sequence each step; same results, slower).
        ban_special_tokens (bool): mmvlp option, off by default (the
            official search may generate any row of the head): never
            generate ``<s>``, ``<pad>``, the mask token or ids beyond the
            tokenizer's vocabulary.
        plain_greedy (bool): mmvlp option, off by default: with
            ``num_beams=1`` decode greedily and stop at the first ``</s>``
            (the official search with one beam goes on past ``</s>`` and
            keeps the best-scoring finished caption).
        label_smoothing (float): Defaults to 0.1.
        drop_worst_ratio (float): Share of the largest token losses dropped
            after ``drop_worst_after`` steps. Defaults to 0.2.
        drop_worst_after (int): Training steps before dropping. Defaults to
            12000.
        load_mlm_head (bool): When the backbone's ``init_cfg`` is a
            ``Pretrained`` checkpoint that also holds an ``mlm_head``
            (mmvlp pretraining, official captioning models), load it too.
        bos_id (int): ``<s>`` when no tokenizer is given. Defaults to 0.
        eos_id (int): ``</s>`` when no tokenizer is given. Defaults to 2.
        pad_id (int): ``<pad>`` when no tokenizer is given. Defaults to 1.
        data_preprocessor (dict, optional): See :class:`BEiT3TaskModel`.
        init_cfg (dict, optional): mmengine init config.
    """
    #: What evaluation needs and fine-tuning starts fresh.
    head_parts = {'mlm_head.': 'the word prediction head'}

    # Image+caption sequences.
    backbone_sequences = ('pair', )

    def __init__(self,
                 backbone: dict,
                 tokenizer: Optional[dict] = None,
                 max_length: int = 64,
                 num_beams: int = 3,
                 length_penalty: float = 0.6,
                 use_cache: bool = True,
                 ban_special_tokens: bool = False,
                 plain_greedy: bool = False,
                 label_smoothing: float = 0.1,
                 drop_worst_ratio: float = 0.2,
                 drop_worst_after: int = 12000,
                 load_mlm_head: bool = True,
                 bos_id: int = 0,
                 eos_id: int = 2,
                 pad_id: int = 1,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, data_preprocessor, init_cfg)
        if not 0 <= drop_worst_ratio < 1:
            raise ValueError(f'drop_worst_ratio must be in [0, 1), got '
                             f'{drop_worst_ratio}.')
        if max_length < 3 or max_length - 1 > self.backbone.max_text_len:
            raise ValueError(
                f'max_length must be in [3, max_text_len + 1='
                f'{self.backbone.max_text_len + 1}], got {max_length}.')
        if self.backbone.text_mask_token_id is None:
            raise ValueError('BEiT3Captioner decodes with the mask token; '
                             'set the backbone\'s text_mask_token_id.')
        self.tokenizer = None
        if tokenizer is not None:
            self.tokenizer = TextTokenizer(
                max_length=max(3, max_length),
                **{k: v for k, v in tokenizer.items() if k != 'max_length'})
            bos_id, eos_id = self.tokenizer.bos_id, self.tokenizer.eos_id
            pad_id = self.tokenizer.pad_id
            if self.tokenizer.vocab_size > self.backbone.vocab_size:
                raise ValueError(
                    f'The tokenizer has {self.tokenizer.vocab_size} ids but '
                    f'the backbone only {self.backbone.vocab_size} rows.')
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.mask_id = self.backbone.text_mask_token_id
        # Banned with ban_special_tokens: <s>, <pad>, the mask token and
        # rows beyond the tokenizer's vocabulary.
        limit = self.backbone.vocab_size
        if self.tokenizer is not None:
            limit = self.tokenizer.vocab_size
        banned = {bos_id, pad_id, self.mask_id}
        if eos_id in banned or not 0 <= eos_id < limit:
            raise ValueError(f'eos_id {eos_id} is not a token that can be '
                             f'generated (special ids {sorted(banned)}, '
                             f'vocabulary {limit}).')
        allowed = torch.arange(self.backbone.vocab_size) < limit
        allowed[sorted(banned)] = False
        self.register_buffer('_allowed', allowed, persistent=False)
        self.max_length = max_length
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.use_cache = use_cache
        self.ban_special_tokens = ban_special_tokens
        self.plain_greedy = plain_greedy
        self.label_smoothing = label_smoothing
        self.drop_worst_ratio = drop_worst_ratio
        self.drop_worst_after = drop_worst_after
        self.load_mlm_head = load_mlm_head
        self.mlm_head = MaskedTokenHead(self.backbone.embed_dims,
                                        self.backbone.vocab_size)
        # Training steps taken (for drop_worst_after); saved with the model.
        self.register_buffer('train_steps', torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------
    def init_weights(self) -> None:
        """Initialise; with ``load_mlm_head`` also take the ``mlm_head`` of
        the backbone's pretrained checkpoint when it has one."""
        super().init_weights()
        if self.has_pretrained_init():  # the whole-model file has the head
            return
        cfg = self.backbone.init_cfg
        cfg = cfg[-1] if isinstance(cfg, (list, tuple)) and cfg else cfg
        if not (self.load_mlm_head and isinstance(cfg, dict)
                and cfg.get('type') == 'Pretrained' and cfg.get('checkpoint')):
            return
        state = extract_state_dict(
            _load_checkpoint(_resolve_path(cfg['checkpoint']), 'cpu'))
        found = {}
        for key, value in state.items():
            for prefix in ('mlm_head.fc.', 'mlm_head.'):  # mmvlp / official
                if key.startswith(prefix):
                    found.setdefault(key[len(prefix):], value)
                    break
        own = self.mlm_head.fc.state_dict()
        if set(found) != set(own) or any(
                found[k].shape != own[k].shape for k in own):
            print_log(
                f'BEiT3Captioner: {cfg["checkpoint"]} has no mlm_head of '
                f'shape {tuple(own["weight"].shape)}; the head starts from '
                'scratch.', logger='current')
            return
        self.mlm_head.fc.load_state_dict(found)
        print_log(f'BEiT3Captioner: loaded the mlm_head of '
                  f'{cfg["checkpoint"]}.', logger='current')

    def _num_image_tokens(self, images: torch.Tensor) -> int:
        patch = self.backbone.patch_size
        return (images.shape[-2] // patch) * (images.shape[-1] // patch) + 1

    def _text_logits(self, images: torch.Tensor, text_ids: torch.Tensor,
                     padding: torch.Tensor) -> torch.Tensor:
        """Hidden states of the text positions under the prefix-causal
        mask ``(B, L, C)``."""
        num_image = self._num_image_tokens(images)
        mask = prefix_causal_mask(num_image, text_ids.shape[1], images.device)
        hidden = self.backbone.forward_sequence(
            images=images, text_ids=text_ids, text_padding_mask=padding,
            attn_mask=mask)
        return hidden[:, num_image:]

    def extract_feat(self, images: torch.Tensor,
                     data_samples: List[DataSample]) -> torch.Tensor:
        """Token logits ``(B, L, V)`` of the (masked) captions."""
        key = 'masked_text_ids' if 'masked_text_ids' in data_samples[0] \
            else 'text_ids'
        ids = stack_field(data_samples, key, self.device).long()
        padding = stack_field(data_samples, 'text_padding_mask',
                              self.device).bool()
        return self.mlm_head(self._text_logits(images, ids, padding))

    def loss(self, images: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        targets = stack_field(data_samples, 'text_ids', self.device).long()
        masked = stack_field(data_samples, 'masked_text_ids',
                             self.device).long()
        padding = stack_field(data_samples, 'text_padding_mask',
                              self.device).bool()
        predict = stack_field(data_samples, 'text_mlm_mask',
                              self.device).bool()
        hidden = self._text_logits(images, masked, padding)
        selected = targets[predict]
        if not selected.numel():
            zero = hidden.sum() * 0.
            return dict(loss_caption=zero, caption_acc=zero.detach())
        logits = self.mlm_head(hidden[predict])
        losses = smoothed_cross_entropy(logits, selected,
                                        self.label_smoothing)
        if self.training:
            self.train_steps += 1
        if self.drop_worst_ratio and int(
                self.train_steps) > self.drop_worst_after:
            keep = max(1, int(losses.numel() * (1 - self.drop_worst_ratio)))
            losses = losses.topk(keep, largest=False).values
        accuracy = (logits.argmax(-1) == selected).float().mean() * 100
        return dict(loss_caption=losses.mean(),
                    caption_acc=accuracy.detach())

    def next_token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the next word from the mask position's hidden state
        (``-inf`` for the special tokens with ``ban_special_tokens``)."""
        logits = self.mlm_head(hidden).float()
        if self.ban_special_tokens:
            logits = logits.masked_fill(~self._allowed, float('-inf'))
        return logits

    @torch.no_grad()
    def generate(self,
                 images: torch.Tensor,
                 num_beams: Optional[int] = None,
                 max_length: Optional[int] = None,
                 use_cache: Optional[bool] = None) -> List[List[int]]:
        """Token ids of the generated captions (without ``<s>`` /
        ``</s>``; with the official search they may hold other special
        ids, which :meth:`~mmvlp.text.TextTokenizer.decode` drops as the
        official evaluation does).

        Args:
            images (Tensor): ``(B, 3, H, W)``, normalised.
            num_beams (int, optional): Defaults to the model's.
            max_length (int, optional): Defaults to the model's.
            use_cache (bool, optional): Defaults to the model's.
        """
        num_beams = num_beams or self.num_beams
        max_length = max_length or self.max_length
        use_cache = self.use_cache if use_cache is None else use_cache
        stepper = (CachedSteps if use_cache else FullSteps)(
            self.backbone, self.next_token_logits, self.bos_id, self.mask_id,
            max_text_tokens=max_length)
        if num_beams == 1 and self.plain_greedy:
            return greedy_search(stepper, images, max_length - 2,
                                 self.eos_id)
        return beam_search(stepper, images, max_length, self.eos_id,
                           num_beams, self.length_penalty, self.pad_id)

    def predict(self, images: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """``pred_caption`` (text) and ``pred_token_ids`` of each image."""
        if self.tokenizer is None:
            raise ValueError('BEiT3Captioner needs tokenizer=dict(model_file='
                             '...) to turn generated ids into captions.')
        captions = self.generate(images)
        if data_samples is None:
            data_samples = [DataSample() for _ in captions]
        for sample, ids in zip(data_samples, captions):
            sample.pred_token_ids = ids
            sample.pred_caption = self.tokenizer.decode(ids)
        return data_samples


__all__ = ['BEiT3Captioner', 'smoothed_cross_entropy']
