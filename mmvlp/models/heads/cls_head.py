"""BEiT-3's image-classification head for mmpretrain's ``ImageClassifier``."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from mmvlp.registry import MODELS


@MODELS.register_module()
class BEiT3ClsHead(LinearClsHead):
    """LayerNorm then Linear: the head of BEiT-3's ImageNet fine-tuning.

    The official model (unilm ``BEiT3ForImageClassification``) averages the
    patch tokens of a backbone without final norm, normalises the mean with
    ``fc_norm`` and classifies it with ``head``, whose weights start at
    ``trunc_normal(std=0.02) * 0.001``. With mmvlp use
    ``BEiT3(final_norm=False, out_type='avg_featmap')`` and this head; the
    official ``fc_norm.*`` / ``head.*`` tensors are ``fc_norm`` / ``fc`` here.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Feature width (the backbone's ``embed_dims``).
        init_scale (float): Factor on the initial ``fc`` weights and bias.
            Defaults to 0.001.
        norm_eps (float): ``fc_norm`` epsilon. Defaults to 1e-5
            (``nn.LayerNorm``, as the reference).
        loss (dict): mmpretrain loss config (unscoped types resolve in
            mmpretrain). Defaults to cross-entropy.
        init_cfg (dict, optional): Defaults to ``TruncNormal(std=0.02)`` on
            the Linear layer.
        **kwargs: ``topk``, ``cal_acc`` of mmpretrain's ``ClsHead``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 init_scale: float = 0.001,
                 norm_eps: float = 1e-5,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02),
                 **kwargs) -> None:
        if isinstance(loss, dict):
            loss = dict(loss)
            if isinstance(loss.get('type'), str) and '.' not in loss['type']:
                loss['type'] = f'mmpretrain.{loss["type"]}'
            loss = MMPRETRAIN_MODELS.build(loss)
        super().__init__(num_classes, in_channels, init_cfg=init_cfg,
                         loss=loss, **kwargs)
        self.init_scale = init_scale
        self.fc_norm = nn.LayerNorm(in_channels, eps=norm_eps)

    def init_weights(self) -> None:
        """``init_cfg`` on ``fc``, then scale it by ``init_scale``."""
        first = not self._is_init
        super().init_weights()
        if first:
            with torch.no_grad():
                self.fc.weight.mul_(self.init_scale)
                self.fc.bias.mul_(self.init_scale)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """``fc_norm`` of the last backbone output."""
        return self.fc_norm(feats[-1])


__all__ = ['BEiT3ClsHead']
