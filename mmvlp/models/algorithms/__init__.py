"""Training algorithms."""
from .beit3_pretrain import BEiT3Pretrain

__all__ = ['BEiT3Pretrain']
