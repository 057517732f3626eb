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


def test_text_masking_ratio_and_replacements():
    """Of the chosen tokens 80% become the mask token, 10% a random token
    and 10% stay, each share within 5 binomial standard deviations of its
    expectation (a random draw equals the original token with probability
    1/95: 95 ids can be drawn); the random tokens are uniform over the
    allowed ids (chi-square)."""
    from scipy.stats import chisquare

    from mmvlp.datasets.transforms import TextMasking
    transform = TextMasking(mask_id=99, vocab_size=100, mask_ratio=0.5,
                            seed=0)
    ids = np.array([0] + list(range(10, 50)) + [2] + [1] * 8)  # 40 real
    kinds, draws = np.zeros(3), []
    for _ in range(300):
        out = transform({'text_ids': ids})
        chosen = out['text_mlm_mask']
        masked = out['masked_text_ids']
        assert chosen.sum() == 20
        assert not chosen[0] and not chosen[41] and not chosen[42:].any()
        assert np.array_equal(masked[~chosen], ids[~chosen])
        new, old = masked[chosen], ids[chosen]
        random = (new != 99) & (new != old)
        kinds += [(new == 99).sum(), random.sum(), (new == old).sum()]
        draws.extend(new[random])
    total = kinds.sum()
    assert total == 300 * 20
    allowed = [i for i in range(4, 100) if i != 99]
    same = 1 / len(allowed)  # a random draw that hits the original
    expected = np.array([0.8, 0.1 * (1 - same), 0.1 + 0.1 * same])
    bound = 5 * np.sqrt(expected * (1 - expected) / total)
    shares = kinds / total
    assert (np.abs(shares - expected) < bound).all(), (shares, expected)
    draws = np.array(draws)
    assert set(draws) <= set(allowed)
    counts = np.array([(draws == i).sum() for i in allowed])
    assert chisquare(counts).pvalue > 1e-3


def test_text_masking_short_text_masks_one():
    from mmvlp.datasets.transforms import TextMasking
    transform = TextMasking(mask_id=9, vocab_size=10, seed=0)
    out = transform({'text_ids': np.array([0, 5, 2, 1])})
    assert out['text_mlm_mask'].tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match='mask_id'):
        TextMasking(mask_id=100, vocab_size=10)


def test_mean_ratio_and_contiguous_blocks():
    """Over many draws the masked share is within 2% of the target, and the
    mask is made of a few contiguous blocks (i.i.d. masking of 40% of a
    14x14 grid gives dozens of pieces)."""
    from scipy import ndimage
    transform = BlockwiseMaskGenerator(input_size=14, mask_ratio=0.4, seed=1)
    masks = [transform({})['vision_mask'] for _ in range(1000)]
    ratio = np.mean([m.mean() for m in masks])
    assert abs(ratio - 0.4) / 0.4 < 0.02
    pieces = np.mean([ndimage.label(m)[1] for m in masks])
    random = np.random.default_rng(0).random((200, 14, 14)) < 0.4
    random_pieces = np.mean([ndimage.label(m)[1] for m in random])
    assert pieces < 3 < 10 < random_pieces
