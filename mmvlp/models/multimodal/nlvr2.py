"""BEiT-3 visual reasoning on pairs of images (NLVR2)."""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmvlp.registry import MODELS
from ..heads import TwoLayerMLPHead
from .base import BEiT3TaskModel, stack_field


@MODELS.register_module()
class BEiT3NLVR2(BEiT3TaskModel):
    """Is a statement true of a pair of images? Each image is encoded
    together with the statement; the vision CLS and text CLS of both pairs
    are concatenated (4C) and classified by a two-layer MLP (LayerNorm ->
    Linear(4C, 2C) -> LayerNorm -> GELU -> Linear(2C, 2), Linear layers
    initialised x 0.001), trained with cross-entropy. Parameter names follow
    the official ``BEiT3ForVisualReasoning`` (``head.{norm1, dense1, norm2,
    dense2}``).

    Args:
        backbone (dict): A ``BEiT3`` config.
        num_classes (int): Outputs (2: false / true).
        data_preprocessor (dict, optional): See :class:`BEiT3TaskModel`;
            images arrive as ``(B, 2, 3, H, W)``.
        init_cfg (dict, optional): mmengine init config.
    """
    #: What evaluation needs and fine-tuning starts fresh.
    head_parts = {'head.': 'the NLVR2 classifier'}

    # Image+statement sequences.
    backbone_sequences = ('pair', )

    def __init__(self,
                 backbone: dict,
                 num_classes: int = 2,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, data_preprocessor, init_cfg)
        dims = self.backbone.embed_dims
        self.num_classes = num_classes
        self.head = TwoLayerMLPHead(4 * dims, 2 * dims, num_classes)

    def extract_feat(self, images: torch.Tensor,
                     data_samples: List[DataSample]) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of ``(B, 2, 3, H, W)`` pairs."""
        if images.dim() != 5 or images.shape[1] != 2:
            raise ValueError('NLVR2 needs two images per sample, (B, 2, 3, '
                             f'H, W); got {tuple(images.shape)}. Load them '
                             'with ForEachImage.')
        batch = images.shape[0]
        text_ids, padding = self.texts(data_samples)
        output, _ = self.backbone.encode(
            images=torch.cat([images[:, 0], images[:, 1]]),
            text_ids=text_ids.repeat(2, 1),
            text_padding_mask=padding.repeat(2, 1))
        hidden, split = output.hidden_states, output.num_image_tokens
        pair = torch.cat([hidden[:, 0], hidden[:, split]], dim=-1)
        return self.head(torch.cat([pair[:batch], pair[batch:]], dim=-1))

    def loss(self, images: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        logits = self.extract_feat(images, data_samples)
        labels = stack_field(data_samples, 'gt_label',
                             self.device).view(-1).long()
        accuracy = (logits.argmax(-1) == labels).float().mean() * 100
        return dict(loss_cls=F.cross_entropy(logits.float(), labels),
                    accuracy=accuracy.detach())

    def predict(self, images: torch.Tensor,
                data_samples: List[DataSample]) -> List[DataSample]:
        """``pred_label`` / ``pred_score`` for mmpretrain's ``Accuracy``."""
        scores = self.extract_feat(images, data_samples).float().softmax(-1)
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples


__all__ = ['BEiT3NLVR2']
