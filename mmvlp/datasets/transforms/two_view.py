"""One random crop, two views: the model's and the tokenizer's (BEiT)."""
import math
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmvlp.registry import TRANSFORMS


def sample_crop(rng: np.random.Generator, height: int, width: int,
                scale: Tuple[float, float], ratio: Tuple[float, float],
                attempts: int = 10) -> Tuple[int, int, int, int]:
    """A random-resized-crop box ``(top, left, h, w)``.

    Area share uniform in ``scale``, aspect log-uniform in ``ratio``; after
    ``attempts`` misses, the largest centred box within ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@TRANSFORMS.register_module()
class TwoViewCrop(BaseTransform):
    """Crop one random region and resize it twice: ``img`` for the model
    and ``tokenizer_img`` for the visual tokenizer (its own size and
    interpolation, e.g. bicubic 224 and lanczos 224 in BEiT).

    Put flips and colour jitter before this transform so both views agree.
    ``tokenizer_img`` is a ``(3, h, w)`` uint8 tensor of raw pixels in the
    channel order of ``img``.

    Args:
        size (int | tuple): Model view ``(h, w)``.
        second_size (int | tuple): Tokenizer view ``(h, w)``.
        scale (tuple): Range of the crop's share of the image area.
        ratio (tuple): Range of the crop's aspect ratio (w / h).
        interpolation (str): mmcv interpolation of the model view.
        second_interpolation (str): mmcv interpolation of the tokenizer view.
        seed (int, optional): Fix the generator (tests).
    """

    def __init__(self,
                 size: Union[int, Sequence[int]] = 224,
                 second_size: Union[int, Sequence[int]] = 224,
                 scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 interpolation: str = 'bicubic',
                 second_interpolation: str = 'lanczos',
                 seed: Optional[int] = None) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.second_size = (second_size, second_size) if isinstance(
            second_size, int) else tuple(second_size)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f'scale must satisfy 0 < min <= max <= 1, got '
                             f'{scale}.')
        self.scale, self.ratio = scale, ratio
        self.interpolation = interpolation
        self.second_interpolation = second_interpolation
        self.rng = None if seed is None else np.random.default_rng(seed)

    def transform(self, results: dict) -> dict:
        rng = self.rng or np.random.default_rng(
            np.random.randint(0, 2**31 - 1))
        image = results['img']
        top, left, h, w = sample_crop(rng, *image.shape[:2], self.scale,
                                      self.ratio)
        crop = image[top:top + h, left:left + w]
        results['img'] = mmcv.imresize(
            crop, self.size[::-1], interpolation=self.interpolation)
        second = mmcv.imresize(
            crop, self.second_size[::-1],
            interpolation=self.second_interpolation)
        results['tokenizer_img'] = torch.from_numpy(
            np.ascontiguousarray(second.transpose(2, 0, 1)))
        results['img_shape'] = self.size
        results['crop_box'] = (top, left, h, w)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, second_size='
                f'{self.second_size}, scale={self.scale}, ratio={self.ratio})')
