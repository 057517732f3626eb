"""Batch preparation for multi-source pretraining."""
from typing import Dict, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mmvlp.registry import MODELS


@MODELS.register_module()
class MultiSourceDataPreprocessor(BaseDataPreprocessor):
    """Turn ``{source: collated PackFields batch}`` into model inputs.

    The model view (``img``) is converted to RGB (when ``bgr_to_rgb``) and
    normalised with ``mean``/``std``; the tokenizer view stays raw pixels
    (tokenizers normalise themselves); masks become bool. Output per source:
    ``images``, ``tokenizer_images``, ``visual_tokens``, ``vision_mask``,
    ``text_ids``, ``masked_text_ids``, ``text_mlm_mask``,
    ``text_padding_mask`` (those present).

    Args:
        mean (Sequence[float]): Pixel mean (0-255) of the model view.
        std (Sequence[float]): Pixel std of the model view.
        bgr_to_rgb (bool): Images were loaded BGR (mmcv's default).
        non_blocking (bool): Copy batches to the device without blocking
            (the default; it overlaps with compute when the loaders pin
            memory, ``pin_memory=True``, and is a plain copy otherwise).
    """

    RENAME = dict(img='images', tokenizer_img='tokenizer_images')
    BOOL_KEYS = ('vision_mask', 'text_mlm_mask', 'text_padding_mask')

    def __init__(self,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 bgr_to_rgb: bool = True,
                 non_blocking: Optional[bool] = True) -> None:
        super().__init__(non_blocking)
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1),
                             persistent=False)
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, data: Dict[str, dict], training: bool = False) -> dict:
        """Prepare every source of the batch."""
        inputs = {}
        for source, batch in data.items():
            fields = self.cast_data(batch['inputs'])
            part = {}
            for key, value in fields.items():
                if key in ('img', 'tokenizer_img'):
                    value = value.float()
                    if self.bgr_to_rgb:
                        value = value.flip(1)
                    if key == 'img':
                        value = (value - self.mean) / self.std
                elif key in self.BOOL_KEYS:
                    value = value.bool()
                part[self.RENAME.get(key, key)] = value
            inputs[source] = part
        return dict(inputs=inputs, data_samples=None)
