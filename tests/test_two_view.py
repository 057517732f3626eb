"""TwoViewCrop: both views show the same region."""
import mmcv
import numpy as np
import pytest

from mmvlp.datasets.transforms import TwoViewCrop, sample_crop


def test_views_share_the_crop():
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3),
                                              dtype=np.uint8)
    transform = TwoViewCrop(size=32, second_size=16, seed=0)
    out = transform({'img': image.copy()})
    top, left, h, w = out['crop_box']
    crop = image[top:top + h, left:left + w]
    assert out['img'].shape == (32, 32, 3)
    assert out['tokenizer_img'].shape == (3, 16, 16)
    np.testing.assert_array_equal(
        out['img'], mmcv.imresize(crop, (32, 32), interpolation='bicubic'))
    np.testing.assert_array_equal(
        out['tokenizer_img'].permute(1, 2, 0).numpy(),
        mmcv.imresize(crop, (16, 16), interpolation='lanczos'))


def test_crop_statistics():
    rng = np.random.default_rng(1)
    areas = []
    for _ in range(500):
        top, left, h, w = sample_crop(rng, 100, 100, (0.2, 1.0), (0.75, 4 / 3))
        assert 0 <= top <= 100 - h and 0 <= left <= 100 - w
        assert 0.75 - 0.05 <= w / h <= 4 / 3 + 0.05
        areas.append(h * w / 1e4)
    assert 0.19 <= min(areas) and max(areas) <= 1.0
    # Uniform area share, less the large non-square boxes that do not fit
    # (0.54 measured over 2000 draws; torchvision's sampler behaves alike).
    assert 0.5 < np.mean(areas) < 0.6


def test_bad_scale():
    with pytest.raises(ValueError, match='scale'):
        TwoViewCrop(scale=(0.5, 0.2))
