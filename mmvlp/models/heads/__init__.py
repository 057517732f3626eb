"""Prediction heads."""
from .cls_head import BEiT3ClsHead
from .contrastive import contrastive_loss, gather_with_grad
from .masked_token import FactorizedTokenHead, MaskedTokenHead
from .vl_heads import Pooler, TwoLayerMLPHead, VQAHead, init_head_weights

__all__ = [
    'BEiT3ClsHead', 'MaskedTokenHead', 'FactorizedTokenHead',
    'contrastive_loss', 'gather_with_grad',
    'Pooler', 'VQAHead', 'TwoLayerMLPHead', 'init_head_weights'
]
