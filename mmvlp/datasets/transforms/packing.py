"""Pack the fields a pretraining sample carries into tensors."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import PackInputs

from mmvlp.datasets.skips import skip_counter
from mmvlp.registry import TRANSFORMS

PRETRAIN_KEYS = ('img', 'tokenizer_img', 'visual_tokens', 'vision_mask',
                 'text_ids', 'masked_text_ids', 'text_mlm_mask',
                 'text_padding_mask')


@TRANSFORMS.register_module()
class PackFields(BaseTransform):
    """``{'inputs': {key: tensor}}`` for the keys present in the sample.

    Images (``img``, HWC) become CHW uint8 tensors, the rest tensors of their
    dtype. Text fields are padded to ``pad_to``: ids with ``pad_id``, the
    padding mask with True and the MLM mask with False, so that samples batch
    with default collate.

    With ``with_skips`` the output also holds ``skipped``: the samples this
    process skipped (bad files, see :mod:`mmvlp.datasets.skips`) since it
    packed the previous one, an int64 vector indexed like ``SKIP_REASONS``
    that :class:`~mmvlp.engine.DataSkipHook` sums.

    Args:
        keys (Sequence[str]): Fields to pack (missing ones are skipped).
        pad_to (int, optional): Length of the text fields.
        pad_id (int): Padding id (1 for BEiT-3's XLM-R ids).
        with_skips (bool): Add the ``skipped`` counts.
    """

    def __init__(self, keys: Sequence[str] = PRETRAIN_KEYS,
                 pad_to: int = None, pad_id: int = 1,
                 with_skips: bool = True) -> None:
        self.keys = tuple(keys)
        self.pad_to = pad_to
        self.pad_id = pad_id
        self.with_skips = with_skips

    def _pad(self, key: str, value: np.ndarray) -> np.ndarray:
        length = value.shape[0]
        if self.pad_to is None or length == self.pad_to:
            return value
        if length > self.pad_to:
            raise ValueError(f'{key} has {length} tokens, more than pad_to='
                             f'{self.pad_to}.')
        if key in ('text_ids', 'masked_text_ids'):
            fill = self.pad_id
        else:  # masks: padding is padding, and is never predicted
            fill = key == 'text_padding_mask'
        return np.concatenate(
            [value, np.full(self.pad_to - length, fill, dtype=value.dtype)])

    def transform(self, results: dict) -> dict:
        if 'text_ids' in results and 'text_padding_mask' not in results:
            results['text_padding_mask'] = np.zeros(
                len(results['text_ids']), dtype=bool)
        packed = {}
        for key in self.keys:
            if key not in results:
                continue
            value = results[key]
            if key == 'img':
                value = np.ascontiguousarray(value.transpose(2, 0, 1))
            elif key.startswith('text') or key.startswith('masked_text'):
                value = self._pad(key, np.asarray(value))
            packed[key] = value if isinstance(
                value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        if self.with_skips:
            return skip_counter().attach(dict(inputs=packed))
        return dict(inputs=packed)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(keys={self.keys}, pad_to={self.pad_to})'


@TRANSFORMS.register_module()
class PackVLInputs(PackInputs):
    """mmpretrain's ``PackInputs`` for vision-language tasks, plus the skip
    counts of bad data.

    ``inputs`` holds the image (or a list of images, e.g. the pair of an
    NLVR2 sample) and the ``DataSample`` the ``algorithm_keys`` (token ids,
    padding masks, answers, labels) and ``meta_keys``. With ``with_skips``
    the output also holds ``skipped`` (see :class:`PackFields`), which
    :class:`~mmvlp.engine.DataSkipHook` sums.

    Args:
        input_key (str): Field of the image(s). Defaults to ``'img'``.
        algorithm_keys (Sequence[str]): Fields set on the data sample.
        meta_keys (Sequence[str]): Fields set as meta information.
        with_skips (bool): Add the ``skipped`` counts. Defaults to True.
    """

    def __init__(self,
                 input_key: str = 'img',
                 algorithm_keys: Sequence[str] = (),
                 meta_keys: Sequence[str] = PackInputs.DEFAULT_META_KEYS,
                 with_skips: bool = True) -> None:
        super().__init__(input_key, tuple(algorithm_keys), tuple(meta_keys))
        self.with_skips = with_skips

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        if self.with_skips:
            return skip_counter().attach(packed)
        return packed
