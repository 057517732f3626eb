"""Batch preparation for the vision-language task models."""
from typing import Optional

from mmpretrain.models.utils import MultiModalDataPreprocessor

from mmvlp.registry import MODELS


@MODELS.register_module()
class VLDataPreprocessor(MultiModalDataPreprocessor):
    """mmpretrain's ``MultiModalDataPreprocessor`` with non-blocking copies.

    mmpretrain's class takes no ``non_blocking`` (mmengine's base class
    does): with loaders that pin memory (``pin_memory=True``) the copies of
    a batch to the GPU then overlap with compute.

    Args:
        non_blocking (bool): Copy batches to the device without blocking.
        **kwargs: ``mean``, ``std``, ``pad_size_divisor``, ``pad_value``,
            ``to_rgb`` of ``MultiModalDataPreprocessor``.
    """

    def __init__(self, non_blocking: Optional[bool] = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._non_blocking = bool(non_blocking)
