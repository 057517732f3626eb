"""BEiT-3 image-text retrieval: a dual encoder from one Multiway backbone."""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_rank, get_world_size
from mmpretrain.structures import DataSample

from mmvlp.registry import MODELS
from mmvlp.utils.dist import all_gather_rows
from ..heads import contrastive_loss
from .base import BEiT3TaskModel


@MODELS.register_module()
class BEiT3Retrieval(BEiT3TaskModel):
    """Image-text retrieval with BEiT-3 as a dual encoder.

    Images and texts are encoded separately by the same backbone (vision and
    language experts); the vision CLS and the text CLS (``<s>``) go through
    bias-free ``vision_head`` / ``language_head`` projections and are
    l2-normalised; similarities are scaled by ``exp(logit_scale)`` (learned,
    initialised to ``log(1 / 0.07)``) and trained with a symmetric
    contrastive loss whose negatives are gathered across ranks
    (:func:`~mmvlp.models.heads.contrastive_loss`). Parameter names follow
    the official ``BEiT3ForRetrieval``.

    Evaluation follows mmpretrain's retrieval protocol: ``mode='tensor'``
    gives the features of a test batch (an image and all its captions per
    sample) and :meth:`predict_all`, called by mmpretrain's
    ``RetrievalValLoop`` / ``RetrievalTestLoop``, scores every image
    against every text for its ``RetrievalRecall``.

    Args:
        backbone (dict): A ``BEiT3`` config.
        embed_dims (int, optional): Width of the joint space (default: the
            backbone's).
        gather_negatives (bool): Use the pairs of all ranks as negatives.
        max_logit_scale (float, optional): Cap of ``exp(logit_scale)`` in
            the loss (``logit_scale`` is clamped at ``log(cap)``, with no
            gradient above it; CLIP caps at 100). None (default) leaves it
            free, as the official ``BEiT3ForRetrieval`` and its fine-tuning
            engine do (they have no clamp).
        data_preprocessor (dict, optional): See :class:`BEiT3TaskModel`.
        init_cfg (dict, optional): mmengine init config.
    """
    #: What evaluation needs and fine-tuning starts fresh.
    head_parts = {'vision_head.': 'the image projection',
                  'language_head.': 'the text projection',
                  'logit_scale': 'the temperature'}

    # Images and texts are encoded separately.
    backbone_sequences = ('image', 'text')

    def __init__(self,
                 backbone: dict,
                 embed_dims: Optional[int] = None,
                 gather_negatives: bool = True,
                 max_logit_scale: Optional[float] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, data_preprocessor, init_cfg)
        if max_logit_scale is not None and max_logit_scale <= 1:
            raise ValueError('max_logit_scale caps exp(logit_scale) and must '
                             f'be > 1 (CLIP: 100), got {max_logit_scale}.')
        self.max_logit_scale = max_logit_scale
        dims = self.backbone.embed_dims
        embed_dims = embed_dims or dims
        self.vision_head = nn.Linear(dims, embed_dims, bias=False)
        self.language_head = nn.Linear(dims, embed_dims, bias=False)
        for head in (self.vision_head, self.language_head):
            nn.init.trunc_normal_(head.weight, std=.02)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.gather_negatives = gather_negatives

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> l2-normalised ``(B, D)`` embeddings."""
        return self.image_embedding(
            self.backbone.forward_sequence(images=images))

    def encode_text(self, text_ids: torch.Tensor,
                    text_padding_mask: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        """``(B, L)`` token ids -> l2-normalised ``(B, D)`` embeddings."""
        return self.text_embedding(self.backbone.forward_sequence(
            text_ids=text_ids, text_padding_mask=text_padding_mask))

    def image_embedding(self, hidden: torch.Tensor) -> torch.Tensor:
        """The embedding of an image's final hidden states ``(B, N, C)``
        (CLS first): the vision CLS through ``vision_head``, l2-normalised."""
        return F.normalize(self.vision_head(hidden[:, 0]), dim=-1)

    def text_embedding(self, hidden: torch.Tensor) -> torch.Tensor:
        """The embedding of a text's final hidden states ``(B, L, C)``: the
        ``<s>`` token through ``language_head``, l2-normalised."""
        return F.normalize(self.language_head(hidden[:, 0]), dim=-1)

    def loss(self, images: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        text_ids, padding = self.texts(data_samples)
        if text_ids.dim() != 2:
            raise ValueError('Training samples must hold one caption each '
                             f'(text_ids (L,)); got {tuple(text_ids.shape)} '
                             'for the batch (a test_mode dataset?).')
        image_embeds = self.encode_image(images)
        text_embeds = self.encode_text(text_ids, padding)
        logit_scale = self.logit_scale
        if self.max_logit_scale is not None:
            logit_scale = logit_scale.clamp(max=math.log(self.max_logit_scale))
        loss = contrastive_loss(image_embeds, text_embeds, logit_scale,
                                gather=self.gather_negatives)
        return dict(loss_contrastive=loss,
                    logit_scale=logit_scale.detach().exp())

    def extract_feat(self, images: Optional[torch.Tensor],
                     data_samples: Optional[List[DataSample]] = None
                     ) -> Dict[str, torch.Tensor]:
        """Features of a test batch: ``image_feat`` ``(B, D)`` and
        ``text_feat`` ``(T, D)`` of all captions of the samples, in order
        (samples hold ``text_ids`` ``(n_i, L)`` or ``(L,)``)."""
        feats = {}
        if images is not None:
            feats['image_feat'] = self.encode_image(images)
        if data_samples and 'text_ids' in data_samples[0]:
            ids = [torch.as_tensor(s.text_ids) for s in data_samples]
            masks = [torch.as_tensor(s.text_padding_mask)
                     for s in data_samples]
            ids = torch.cat([i.view(-1, i.shape[-1]) for i in ids])
            masks = torch.cat([m.view(-1, m.shape[-1]) for m in masks])
            feats['text_feat'] = self.encode_text(ids.to(self.device),
                                                  masks.to(self.device).bool())
        return feats

    def similarity(self, image_feat: torch.Tensor,
                   text_feat: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``(num_images, num_texts)``."""
        return image_feat @ text_feat.t()

    def predict(self, images: torch.Tensor,
                data_samples: List[DataSample]) -> List[DataSample]:
        """Scores of each image against the captions of this batch
        (``pred_score``); use :meth:`predict_all` for a whole test set."""
        feats = self.extract_feat(images, data_samples)
        scores = self.similarity(feats['image_feat'], feats['text_feat'])
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score)
        return data_samples

    @staticmethod
    def _gather_by_id(rows: torch.Tensor, ids: torch.Tensor,
                      total: int) -> torch.Tensor:
        """Rows of every rank placed at their dataset indices (robust to
        any sampler, duplicates of padded samplers included; ranks may hold
        different numbers of rows)."""
        rows = torch.cat(all_gather_rows(rows.contiguous()))
        ids = torch.cat(all_gather_rows(ids.contiguous()))
        out = rows.new_zeros((total, ) + tuple(rows.shape[1:]))
        seen = torch.zeros(total, dtype=torch.bool, device=rows.device)
        out[ids] = rows
        seen[ids] = True
        if not bool(seen.all()):
            raise RuntimeError(f'Features of {int((~seen).sum())} of {total} '
                               'items are missing after gathering; was the '
                               'test set evaluated completely?')
        return out

    def predict_all(self,
                    feats: Dict[str, torch.Tensor],
                    data_samples: List[DataSample],
                    num_images: Optional[int] = None,
                    num_texts: Optional[int] = None
                    ) -> Tuple[List[DataSample], List[DataSample]]:
        """Image-to-text and text-to-image predictions over the whole test
        set (the interface of mmpretrain's ``RetrievalValLoop``).

        The features and ground truth of all ranks are gathered (ranks may
        hold different numbers of images and captions, and padded samplers
        repeat some); rank ``r`` of ``W`` then scores images and texts
        ``r, r + W, r + 2W, ...``, so that mmengine's ``collect_results``
        (which interleaves the ranks' results and cuts them to the dataset
        size) gives every image and every text exactly once, in order: the
        metrics equal those of one process.

        Args:
            feats (dict): ``image_feat`` / ``text_feat`` of this rank's
                samples (:meth:`extract_feat`, concatenated).
            data_samples (list): This rank's test samples with
                ``image_id`` (image index), ``gt_text_id`` and
                ``gt_image_id``.
            num_images (int, optional): Images in the test set.
            num_texts (int, optional): Texts in the test set.

        Returns:
            tuple: ``i2t`` samples (one per image of this rank's share:
            ``pred_score`` over all texts, ``gt_label`` its captions) and
            ``t2i`` samples (one per text of this rank's share:
            ``pred_score`` over all images, ``gt_label`` its image).
        """
        device = feats['image_feat'].device
        image_ids = torch.tensor([int(s.image_id) for s in data_samples],
                                 device=device)
        text_ids = torch.cat([torch.as_tensor(s.gt_text_id).view(-1)
                              for s in data_samples]).to(device)
        text_images = torch.cat([torch.as_tensor(s.gt_image_id).view(-1)
                                 for s in data_samples]).to(device)
        if num_images is None or num_texts is None:
            top = torch.stack([image_ids.max(), text_ids.max()])
            if get_world_size() > 1:
                all_reduce(top, op='max')
            num_images = num_images or int(top[0]) + 1
            num_texts = num_texts or int(top[1]) + 1
        all_images = self._gather_by_id(feats['image_feat'], image_ids,
                                        num_images)
        all_texts = self._gather_by_id(feats['text_feat'], text_ids,
                                       num_texts)
        owner = self._gather_by_id(text_images, text_ids, num_texts)
        rank, world = get_rank(), get_world_size()
        my_images = torch.arange(rank, num_images, world, device=device)
        my_texts = torch.arange(rank, num_texts, world, device=device)
        i2t_scores = self.similarity(all_images[my_images], all_texts)
        t2i_scores = self.similarity(all_images, all_texts[my_texts]).t()
        captions = [[] for _ in range(num_images)]
        for text, image in enumerate(owner.tolist()):
            captions[image].append(text)
        i2t = []
        for image, score in zip(my_images.tolist(), i2t_scores):
            out = DataSample(image_id=image)
            out.set_gt_label(torch.tensor(captions[image], dtype=torch.long))
            out.set_pred_score(score)
            i2t.append(out)
        t2i = []
        for text, image, score in zip(my_texts.tolist(),
                                      owner[my_texts].tolist(), t2i_scores):
            out = DataSample(text_id=text)
            out.set_gt_label(image)
            out.set_pred_score(score)
            t2i.append(out)
        return i2t, t2i


__all__ = ['BEiT3Retrieval']
