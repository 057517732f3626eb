"""The official BEiT-3 fine-tuning models, rebuilt for parity tests.

Each task model is torchscale 0.3.0's ``BEiT3`` (under ``beit3``, as unilm
``beit3/modeling_utils.BEiT3Wrapper`` holds it) with the head and pooling
that unilm ``beit3/modeling_finetune.py`` describes, written here from
these facts:

* ImageNet (``BEiT3ForImageClassification``): no final norm; the mean of the
  patch tokens (CLS left out) -> ``fc_norm`` (LayerNorm) -> ``head``
  (Linear).
* VQA (``BEiT3ForVisualQuestionAnswering``): no final norm; image and
  question together; ``pooler``: first token -> LayerNorm -> Linear(D, D)
  -> tanh; ``head``: Linear(D, 2D) -> LayerNorm -> GELU -> Linear(2D, n).
* NLVR2 (``BEiT3ForVisualReasoning``): both images with the statement (the
  two pairs stacked in the batch); vision CLS and text CLS of a pair
  concatenated, then both pairs: 4D -> ``head``: LayerNorm -> Linear(4D,
  2D) -> LayerNorm -> GELU -> Linear(2D, 2).
* Retrieval (``BEiT3ForRetrieval``): images alone and texts alone; the
  first token -> bias-free ``vision_head`` / ``language_head`` ->
  l2-normalised; ``logit_scale`` starts at ``log(1 / 0.07)``.
* Captioning (``BEiT3ForCaptioning``): image then text under a
  prefix-causal mask (image tokens see the image, text tokens the image and
  the text up to themselves), ``mlm_head`` Linear(D, vocab) on the text
  positions. Incremental decoding feeds ``[word, mask]`` pairs without the
  image, with torchscale's ``incremental_state``, explicit text positions
  and the last two rows of the mask.

Every tensor is random (constant-initialised ones perturbed) so that a wrong
mapping cannot hide. :func:`official_state` saves a model as the official
code does: ``{'model': state_dict}``.
"""
import math
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .reference_models import torchscale_beit3

__all__ = ['OfficialTaskModel', 'official_task_model', 'official_state',
           'TASK_NORMALIZES_OUTPUT']

#: Whether the official model of a task keeps torchscale's final norm.
TASK_NORMALIZES_OUTPUT = dict(imagenet=False, vqav2=False, nlvr2=True,
                              retrieval=True, captioning=True)


class OfficialTaskModel(nn.Module):
    """torchscale ``BEiT3`` plus one official task head (see the module
    docstring); ``forward_<task>`` methods take what the official
    ``forward`` takes.

    Args:
        task (str): ``'imagenet'``, ``'vqav2'``, ``'nlvr2'``,
            ``'retrieval'`` or ``'captioning'``.
        beit3 (nn.Module): torchscale's ``BEiT3``.
        num_classes (int): Classes (ImageNet), answers (VQA) or 2 (NLVR2).
    """

    def __init__(self, task: str, beit3: nn.Module,
                 num_classes: int = 2) -> None:
        super().__init__()
        self.task = task
        self.beit3 = beit3
        dims = beit3.args.encoder_embed_dim
        if task == 'imagenet':
            self.fc_norm = nn.LayerNorm(dims)
            self.head = nn.Linear(dims, num_classes)
        elif task == 'vqav2':
            self.pooler = nn.Module()
            self.pooler.norm = nn.LayerNorm(dims)
            self.pooler.dense = nn.Linear(dims, dims)
            self.head = nn.Sequential(
                nn.Linear(dims, 2 * dims), nn.LayerNorm(2 * dims), nn.GELU(),
                nn.Linear(2 * dims, num_classes))
        elif task == 'nlvr2':
            self.head = nn.Module()
            self.head.norm1 = nn.LayerNorm(4 * dims)
            self.head.dense1 = nn.Linear(4 * dims, 2 * dims)
            self.head.norm2 = nn.LayerNorm(2 * dims)
            self.head.dense2 = nn.Linear(2 * dims, num_classes)
        elif task == 'retrieval':
            self.vision_head = nn.Linear(dims, dims, bias=False)
            self.language_head = nn.Linear(dims, dims, bias=False)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        elif task == 'captioning':
            self.mlm_head = nn.Linear(dims, beit3.args.vocab_size)
        else:
            raise ValueError(f'Unknown task {task!r}.')

    def _encode(self, **kwargs) -> dict:
        return self.beit3(**kwargs)

    def forward_imagenet(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self._encode(textual_tokens=None,
                              visual_tokens=image)['encoder_out']
        return self.head(self.fc_norm(tokens[:, 1:].mean(dim=1)))

    def forward_vqav2(self, image: torch.Tensor, question: torch.Tensor,
                      padding_mask: torch.Tensor) -> torch.Tensor:
        tokens = self._encode(textual_tokens=question, visual_tokens=image,
                              text_padding_position=padding_mask)
        first = tokens['encoder_out'][:, 0]
        pooled = torch.tanh(self.pooler.dense(self.pooler.norm(first)))
        return self.head(pooled)

    def forward_nlvr2(self, image_a: torch.Tensor, image_b: torch.Tensor,
                      text: torch.Tensor,
                      padding_mask: torch.Tensor) -> torch.Tensor:
        batch = text.shape[0]
        out = self._encode(
            textual_tokens=torch.cat([text, text]),
            visual_tokens=torch.cat([image_a, image_b]),
            text_padding_position=torch.cat([padding_mask, padding_mask]))
        tokens, split = out['encoder_out'], out['multiway_split_position']
        pair = torch.cat([tokens[:, 0], tokens[:, split]], dim=-1)
        both = torch.cat([pair[:batch], pair[batch:]], dim=-1)
        head = self.head
        hidden = F.gelu(head.norm2(head.dense1(head.norm1(both))))
        return head.dense2(hidden)

    def forward_retrieval(
            self,
            image: Optional[torch.Tensor] = None,
            text: Optional[torch.Tensor] = None,
            padding_mask: Optional[torch.Tensor] = None
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        vision = language = None
        if image is not None:
            tokens = self._encode(textual_tokens=None,
                                  visual_tokens=image)['encoder_out']
            vision = F.normalize(self.vision_head(tokens[:, 0]), dim=-1)
        if text is not None:
            tokens = self._encode(textual_tokens=text, visual_tokens=None,
                                  text_padding_position=padding_mask)
            language = F.normalize(
                self.language_head(tokens['encoder_out'][:, 0]), dim=-1)
        return vision, language

    def num_image_tokens(self) -> int:
        return self.beit3.vision_embed.num_position_embeddings()

    def forward_captioning(self,
                           image: Optional[torch.Tensor],
                           text_ids: torch.Tensor,
                           padding_mask: Optional[torch.Tensor],
                           masked_pos: Optional[torch.Tensor] = None,
                           text_len: Optional[int] = None,
                           incremental_state: Optional[dict] = None
                           ) -> torch.Tensor:
        """Token logits of the text positions (``masked_pos`` only when
        given). With ``image=None`` the call is an incremental step:
        ``text_ids`` are the new tokens, ``text_len`` the text length
        including them."""
        text_len = text_ids.shape[1] if text_len is None else text_len
        num_image = self.num_image_tokens()
        total = num_image + text_len
        allowed = torch.zeros(total, total, dtype=torch.long,
                              device=text_ids.device)
        allowed[:num_image, :num_image] = 1
        allowed[num_image:, :num_image] = 1
        allowed[num_image:, num_image:] = torch.ones(
            text_len, text_len, dtype=torch.long).tril()
        blocked = 1 - allowed  # torchscale: nonzero = may not attend
        positions = None
        if incremental_state is not None:
            for index in range(len(self.beit3.encoder.layers)):
                incremental_state.setdefault(index, {})
        if image is None:
            blocked = blocked[-text_ids.shape[1]:]
            padding_mask = None
            positions = torch.arange(
                text_len, text_len + text_ids.shape[1],
                device=text_ids.device)[None]
        out = self._encode(textual_tokens=text_ids, visual_tokens=image,
                           text_padding_position=padding_mask,
                           attn_mask=blocked,
                           incremental_state=incremental_state,
                           positions=positions)['encoder_out']
        text = out[:, num_image:] if image is not None else out
        if masked_pos is not None:
            text = text[masked_pos.bool()]
        return self.mlm_head(text)


def official_task_model(task: str,
                        arch: Union[str, dict],
                        img_size: int = 32,
                        patch_size: int = 16,
                        vocab_size: int = 64010,
                        num_classes: int = 2,
                        seed: int = 0) -> OfficialTaskModel:
    """The official fine-tuning model of ``task`` with random weights.

    Args:
        task (str): See :class:`OfficialTaskModel`.
        arch (str | dict): Backbone arch (see
            :func:`~mmvlp.testing.torchscale_beit3`).
        img_size (int): Image side.
        patch_size (int): Patch side.
        vocab_size (int): Rows of the text table.
        num_classes (int): Head outputs (ImageNet, VQA, NLVR2).
        seed (int): Seed of the random weights.

    Returns:
        OfficialTaskModel: In eval mode.
    """
    beit3 = torchscale_beit3(arch, img_size=img_size, patch_size=patch_size,
                             vocab_size=vocab_size, seed=seed,
                             normalize_output=TASK_NORMALIZES_OUTPUT[task])
    torch.manual_seed(seed + 1)
    model = OfficialTaskModel(task, beit3, num_classes)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith('beit3.'):
                param.normal_(0, 0.2 if param.dim() > 1 else 0.5)
    return model.eval()


def official_state(model: nn.Module, wrapper: Optional[str] = 'model',
                   prefix: str = '', vision_only: bool = False
                   ) -> Union[dict, Dict[str, torch.Tensor]]:
    """A model's weights as the official code saves them.

    Args:
        model (nn.Module): An :class:`OfficialTaskModel`.
        wrapper (str, optional): ``'model'`` (the official files),
            ``'module'``, or None for a bare state dict.
        prefix (str): Put before every key (e.g. ``'module.'`` of DDP).
        vision_only (bool): Keep only the vision parts (no text table,
            text positions or text experts), as the released ImageNet files
            may be.

    Returns:
        dict: ``{wrapper: weights}`` or the weights.
    """
    weights = {}
    for key, value in model.state_dict().items():
        if vision_only and ('text_embed' in key or '.B.' in key):
            continue
        weights[prefix + key] = value.clone()
    return weights if wrapper is None else {wrapper: weights}
