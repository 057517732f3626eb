"""Block-wise masking (BEiT), compared with mmpretrain's generator."""
import numpy as np
import pytest
from mmpretrain.datasets.transforms import BEiTMaskGenerator

from mmvlp.datasets.transforms import BlockwiseMaskGenerator, blockwise_mask


def test_mask_count_and_determinism():
    transform = BlockwiseMaskGenerator(input_size=14, mask_ratio=0.4, seed=3)
    counts = [transform({})['vision_mask'].sum() for _ in range(200)]
    assert transform.num_masked == 78
    assert max(counts) <= 78
    assert np.mean(counts) > 74  # BEiT stops only when no block fits
    a = BlockwiseMaskGenerator(seed=7)({})['vision_mask']
    b = BlockwiseMaskGenerator(seed=7)({})['vision_mask']
    assert np.array_equal(a, b)


def test_statistics_match_mmpretrain():
    """Same algorithm as mmpretrain's BEiTMaskGenerator: similar masked
    counts and similar numbers of masked rows/columns (block shapes)."""
    np.random.seed(0)
    reference = BEiTMaskGenerator(input_size=14, num_masking_patches=78,
                                  min_num_patches=16)
    ours = BlockwiseMaskGenerator(input_size=14, mask_ratio=0.4, seed=0)
    theirs = [reference({})['mask'].astype(bool) for _ in range(400)]
    mine = [ours({})['vision_mask'] for _ in range(400)]

    def stats(masks):
        return (np.mean([m.sum() for m in masks]),
                np.mean([m.any(1).sum() for m in masks]))

    (count_a, rows_a), (count_b, rows_b) = stats(theirs), stats(mine)
    assert abs(count_a - count_b) < 1.5
    assert abs(rows_a - rows_b) < 0.5


def test_budget_is_never_exceeded():
    """Blocks are added only while they fit the budget."""
    for seed in range(50):
        mask = blockwise_mask(np.random.default_rng(seed), (14, 14),
                              num_masked=16, min_block=16)
        assert 12 <= mask.sum() <= 16


def test_bad_arguments():
    with pytest.raises(ValueError, match='mask_ratio'):
        BlockwiseMaskGenerator(mask_ratio=1.2)
    with pytest.raises(ValueError, match='min_num_patches'):
        BlockwiseMaskGenerator(input_size=4, mask_ratio=0.4)
