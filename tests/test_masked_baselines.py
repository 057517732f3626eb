"""The masked-token baselines of the demo evaluation, against hand
computations."""
import numpy as np
import pytest

from mmvlp.evaluation import NgramBaseline, nearest_visible, visible_majority


def test_visible_majority_counts_only_visible_patches():
    tokens = np.array([[1, 1, 2, 2, 2],
                       [4, 5, 5, 6, 4],
                       [2, 1, 0, 0, 0]])
    mask = np.array([[0, 0, 1, 1, 1],   # visible 1, 1 (masked 2s outvote)
                     [1, 0, 0, 0, 1],   # visible 5, 5, 6
                     [0, 0, 1, 1, 1]],  # visible 2, 1: a tie -> 1
                    dtype=bool)
    pred = visible_majority(tokens, mask)
    assert pred.tolist() == [[1] * 5, [5] * 5, [1] * 5]
    # An image without a visible patch: the batch's visible majority.
    mask[2] = True
    assert visible_majority(tokens, mask)[2].tolist() == [1] * 5


def test_nearest_visible_copies_the_closest_patch():
    # 3x3 grid, row-major:   7 7 9
    #                        7 . 9      (. masked)
    #                        3 3 .
    tokens = np.array([[7, 7, 9, 7, 0, 9, 3, 3, 8]])
    mask = np.zeros((1, 9), dtype=bool)
    mask[0, [4, 8]] = True
    pred = nearest_visible(tokens, mask, (3, 3))
    # Centre: four neighbours at distance 1 (7 above, 7 left, 9 right,
    # 3 below): 7 wins the vote. Corner (2, 2): 9 above, 3 left -> a tie,
    # the smaller id 3.
    assert pred[0, 4] == 7 and pred[0, 8] == 3
    # Visible patches keep their own token.
    assert (pred[0, ~mask[0]] == tokens[0, ~mask[0]]).all()
    # Euclidean: from (0, 0), (1, 1) is nearer than (0, 2) (along the rows
    # both would be 2 away, and the tie would go to the smaller id 4).
    tokens = np.array([[1, 1, 4, 1, 9, 1, 1, 1, 1]])
    mask = np.ones((1, 9), dtype=bool)
    mask[0, [2, 4]] = False
    assert nearest_visible(tokens, mask, (3, 3))[0, 0] == 9
    with pytest.raises(ValueError, match='grid 3x3 has 9'):
        nearest_visible(tokens[:, :8], mask[:, :8], (3, 3))


def test_nearest_visible_is_euclidean_on_non_square_grids():
    # 4x5 grid: from (0, 0), (0, 4) is 4 away and (3, 3) is sqrt(18): the
    # Euclidean choice is (0, 4); along the larger axis (Chebyshev) (3, 3)
    # would be nearer, along both axes summed (Manhattan) also (0, 4).
    height, width = 4, 5
    tokens = np.ones((1, height * width), dtype=int)
    tokens[0, 0 * width + 4] = 6
    tokens[0, 3 * width + 3] = 8
    mask = np.ones_like(tokens, dtype=bool)
    mask[0, [4, 3 * width + 3]] = False
    pred = nearest_visible(tokens, mask, (height, width))
    assert pred[0, 0] == 6
    # Row-major positions read with the width: (3, 0) is nearer to (3, 3)
    # (3 away) than to (0, 4) (5 away).
    assert pred[0, 3 * width] == 8
    # A 2x3 grid and its transpose give other answers for the same tokens.
    tokens = np.array([[5, 0, 0, 0, 0, 9]])
    mask = np.array([[0, 1, 1, 1, 1, 0]], dtype=bool)
    # 2x3: index 2 is (0, 2), 1 from (1, 2) -> 9; index 3 is (1, 0), 1
    # from (0, 0) -> 5.
    assert nearest_visible(tokens, mask, (2, 3))[0].tolist() == \
        [5, 5, 9, 5, 9, 9]
    # 3x2: index 2 is (1, 0), 1 from (0, 0) -> 5; index 3 is (1, 1), 1
    # from (2, 1) -> 9.
    assert nearest_visible(tokens, mask, (3, 2))[0].tolist() == \
        [5, 5, 5, 9, 9, 9]


def test_ngram_baseline_position_and_bigram():
    # 99 is the mask id; a training text that holds it shows that the
    # bigram never conditions on a mask.
    training = [[0, 5, 6, 2], [0, 5, 7, 2], [0, 5, 6, 2], [99, 8]]
    ngram = NgramBaseline(training, length=5)
    # Position 4 was never seen: the overall majority (0, 2 and 5 are
    # tied at 3: the smallest, 0).
    assert ngram.position.tolist() == [0, 5, 6, 2, 0]
    assert ngram.next_token == {0: 5, 5: 6, 6: 2, 7: 2, 99: 8}
    mask_id = 99
    inputs = np.array([[0, 99, 99, 2, 1],
                       [0, 5, 99, 99, 1],
                       [0, 7, 99, 99, 1]])
    assert ngram.predict_position(inputs).tolist() == [[0, 5, 6, 2, 0]] * 3
    bigram = ngram.predict_bigram(inputs, mask_id)
    # After a mask the position majority; after a seen token its most
    # frequent follower; after an unseen one (1) the position majority.
    assert bigram[0, 1:].tolist() == [5, 6, 2, 0]
    assert bigram[1, 2] == 6 and bigram[1, 3] == 2
    assert bigram[2, 2] == 2
