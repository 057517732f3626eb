"""BEiT-3 image-text retrieval: a dual encoder from one Multiway backbone."""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather, get_world_size
from mmpretrain.structures import DataSample

from mmvlp.registry import MODELS
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
        data_preprocessor (dict, optional): See :class:`BEiT3TaskModel`.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 backbone: dict,
                 embed_dims: Optional[int] = None,
                 gather_negatives: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, data_preprocessor, init_cfg)
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
        loss = contrastive_loss(image_embeds, text_embeds, self.logit_scale,
                                gather=self.gather_negatives)
        return dict(loss_contrastive=loss,
                    logit_scale=self.logit_scale.detach().exp())

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
    def _gather_by_id(feats: torch.Tensor, ids: torch.Tensor,
                      total: int) -> torch.Tensor:
        """Rows of every rank placed at their dataset indices (robust to
        any sampler, duplicates of padded samplers included)."""
        if get_world_size() > 1:
            feats = torch.cat(all_gather(feats.contiguous()))
            ids = torch.cat(all_gather(ids.contiguous()))
        out = feats.new_zeros(total, feats.shape[1])
        seen = torch.zeros(total, dtype=torch.bool, device=feats.device)
        out[ids] = feats
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

        Args:
            feats (dict): ``image_feat`` / ``text_feat`` of this rank's
                samples (:meth:`extract_feat`, concatenated).
            data_samples (list): This rank's test samples with
                ``image_id`` (image index), ``gt_text_id`` and
                ``gt_image_id``.
            num_images (int, optional): Images in the test set.
            num_texts (int, optional): Texts in the test set.

        Returns:
            tuple: ``i2t`` samples (one per local image: ``pred_score`` over
            all texts, ``gt_label`` its captions) and ``t2i`` samples (one
            per local text: ``pred_score`` over all images, ``gt_label`` its
            image).
        """
        device = feats['image_feat'].device
        image_ids = torch.tensor([int(s.image_id) for s in data_samples],
                                 device=device)
        text_ids = torch.cat([torch.as_tensor(s.gt_text_id).view(-1)
                              for s in data_samples]).to(device)
        num_images = num_images or int(image_ids.max()) + 1
        num_texts = num_texts or int(text_ids.max()) + 1
        all_images = self._gather_by_id(feats['image_feat'], image_ids,
                                        num_images)
        all_texts = self._gather_by_id(feats['text_feat'], text_ids,
                                       num_texts)
        i2t_scores = self.similarity(feats['image_feat'], all_texts)
        t2i_scores = self.similarity(all_images, feats['text_feat']).t()
        i2t = []
        for sample, score in zip(data_samples, i2t_scores):
            out = DataSample(image_id=int(sample.image_id))
            out.set_gt_label(torch.as_tensor(sample.gt_text_id).view(-1))
            out.set_pred_score(score)
            i2t.append(out)
        t2i, row = [], 0
        for sample in data_samples:
            for text_id, image_id in zip(
                    torch.as_tensor(sample.gt_text_id).view(-1).tolist(),
                    torch.as_tensor(sample.gt_image_id).view(-1).tolist()):
                out = DataSample(text_id=text_id)
                out.set_gt_label(image_id)
                out.set_pred_score(t2i_scores[row])
                t2i.append(out)
                row += 1
        return i2t, t2i


__all__ = ['BEiT3Retrieval']
