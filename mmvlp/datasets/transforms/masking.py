"""Block-wise patch masking for masked image modeling (BEiT)."""
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform

from mmvlp.registry import TRANSFORMS


def blockwise_mask(rng: np.random.Generator,
                   grid: Tuple[int, int],
                   num_masked: int,
                   min_block: int = 16,
                   max_block: Optional[int] = None,
                   aspect_range: Tuple[float, float] = (0.3, 1 / 0.3),
                   attempts: int = 10) -> np.ndarray:
    """BEiT's block-wise mask: random rectangles until ``num_masked`` patches.

    Each block has an area drawn from ``[min_block, remaining]`` (capped by
    ``max_block``) and a log-uniform aspect ratio; a block is kept when it adds
    new patches without exceeding the budget. Up to ``attempts`` draws are
    tried per block; when none fits, masking stops (so the count can end
    slightly below ``num_masked``, as in BEiT).

    Args:
        rng (np.random.Generator): Source of randomness.
        grid (tuple): ``(h, w)`` patches.
        num_masked (int): Target number of masked patches.
        min_block (int): Smallest block area.
        max_block (int, optional): Largest block area (default: no cap).
        aspect_range (tuple): Range of block aspect ratios (h / w).
        attempts (int): Draws per block.

    Returns:
        np.ndarray: ``(h, w)`` bool, True at masked patches.
    """
    height, width = grid
    mask = np.zeros(grid, dtype=bool)
    log_low, log_high = math.log(aspect_range[0]), math.log(aspect_range[1])
    count = 0
    while count < num_masked:
        budget = num_masked - count
        if max_block is not None:
            budget = min(budget, max_block)
        added = 0
        for _ in range(attempts):
            # Between min_block and budget, in either order (as numpy's
            # legacy uniform that BEiT uses, once fewer than min_block
            # patches remain).
            area = min_block + (budget - min_block) * rng.random()
            aspect = math.exp(rng.uniform(log_low, log_high))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if not (0 < h < height and 0 < w < width):
                continue
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            block = mask[top:top + h, left:left + w]
            new = h * w - int(block.sum())
            if 0 < new <= budget:
                block[...] = True
                added = new
                break
        if added == 0:
            break
        count += added
    return mask


@TRANSFORMS.register_module()
class BlockwiseMaskGenerator(BaseTransform):
    """Add ``results['vision_mask']``: BEiT's block-wise patch mask.

    Args:
        input_size (int | tuple): Patch grid ``(h, w)`` (14 for 224 / 16).
        mask_ratio (float): Share of patches to mask (0.4 in BEiT-3).
        min_num_patches (int): Smallest block (16 in BEiT).
        max_num_patches (int, optional): Largest block.
        min_aspect (float): Smallest aspect ratio; the largest is
            ``max_aspect`` or ``1 / min_aspect``.
        max_aspect (float, optional): Largest aspect ratio.
        seed (int, optional): Fix the generator (tests, debugging); by
            default numpy's global state seeds it, which mmengine sets per
            worker and rank from the run's seed.
    """

    def __init__(self,
                 input_size: Union[int, Sequence[int]] = 14,
                 mask_ratio: float = 0.4,
                 min_num_patches: int = 16,
                 max_num_patches: Optional[int] = None,
                 min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None,
                 seed: Optional[int] = None) -> None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        if not 0 < mask_ratio < 1:
            raise ValueError(f'mask_ratio must be in (0, 1), got '
                             f'{mask_ratio}.')
        self.grid = tuple(input_size)
        self.num_masked = int(round(mask_ratio * self.grid[0] * self.grid[1]))
        if min_num_patches > self.num_masked:
            raise ValueError(f'min_num_patches ({min_num_patches}) exceeds the '
                             f'{self.num_masked} patches to mask.')
        self.min_num_patches = min_num_patches
        self.max_num_patches = max_num_patches
        self.aspect_range = (min_aspect, max_aspect or 1 / min_aspect)
        self.rng = None if seed is None else np.random.default_rng(seed)

    def transform(self, results: dict) -> dict:
        rng = self.rng or np.random.default_rng(
            np.random.randint(0, 2**31 - 1))
        results['vision_mask'] = blockwise_mask(
            rng, self.grid, self.num_masked, self.min_num_patches,
            self.max_num_patches, self.aspect_range)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(input_size={self.grid}, num_masked='
                f'{self.num_masked}, min_num_patches={self.min_num_patches}, '
                f'aspect_range={self.aspect_range})')


@TRANSFORMS.register_module()
class TextMasking(BaseTransform):
    """BERT-style masking of ``results['text_ids']`` for masked language
    modeling (15% for monomodal text, 50% for text in image-text pairs in
    BEiT-3).

    Of the real (non-special, non-padding) tokens, ``mask_ratio`` are chosen
    (at least one); of those, 80% become the mask token, 10% a random token
    and 10% stay as they are. Adds ``masked_text_ids`` (the model input) and
    ``text_mlm_mask`` (True at the chosen positions, whose labels are
    ``text_ids``).

    Args:
        mask_id (int): The mask token (64001 for ``beit3.spm``).
        vocab_size (int): Random replacements are drawn from
            ``[num_special, vocab_size)`` excluding ``mask_id``.
        mask_ratio (float): Share of real tokens to predict.
        special_ids (Sequence[int]): Ids never masked (``<s>``, ``<pad>``,
            ``</s>``, ``<unk>``).
        num_special (int): Ids below this are never drawn as replacements.
        replace_probs (tuple): Probabilities of (mask token, random token,
            unchanged).
        seed (int, optional): Fix the generator (tests); by default numpy's
            global state seeds it.
        candidates_key (str, optional): A bool field (e.g. ``text_word_mask``
            from ``TokenizeText(words_key=...)``) restricting the masked
            positions to its True entries when it has any.
    """

    def __init__(self,
                 mask_id: int,
                 vocab_size: int,
                 mask_ratio: float = 0.15,
                 special_ids: Sequence[int] = (0, 1, 2, 3),
                 num_special: int = 4,
                 replace_probs: Tuple[float, float, float] = (0.8, 0.1, 0.1),
                 seed: Optional[int] = None,
                 candidates_key: Optional[str] = None) -> None:
        if not 0 < mask_ratio < 1:
            raise ValueError(f'mask_ratio must be in (0, 1), got '
                             f'{mask_ratio}.')
        if abs(sum(replace_probs) - 1) > 1e-6 or min(replace_probs) < 0:
            raise ValueError(f'replace_probs must be 3 non-negative values '
                             f'summing to 1, got {replace_probs}.')
        if not num_special <= mask_id < vocab_size:
            raise ValueError(f'mask_id {mask_id} is outside [{num_special}, '
                             f'{vocab_size}).')
        self.mask_id = mask_id
        self.vocab_size = vocab_size
        self.mask_ratio = mask_ratio
        self.special_ids = np.asarray(special_ids)
        self.num_special = num_special
        self.replace_probs = replace_probs
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.candidates_key = candidates_key

    def transform(self, results: dict) -> dict:
        rng = self.rng or np.random.default_rng(
            np.random.randint(0, 2**31 - 1))
        ids = np.asarray(results['text_ids'])
        real = ~np.isin(ids, self.special_ids)
        if self.candidates_key is not None:
            candidates = np.asarray(results.get(self.candidates_key, []),
                                    dtype=bool)
            if candidates.shape == real.shape and (real & candidates).any():
                real &= candidates
        positions = np.flatnonzero(real)
        chosen = np.zeros_like(real)
        if positions.size:
            count = max(1, int(round(self.mask_ratio * positions.size)))
            chosen[rng.choice(positions, count, replace=False)] = True
        masked = ids.copy()
        action = rng.choice(3, size=ids.shape, p=self.replace_probs)
        masked[chosen & (action == 0)] = self.mask_id
        random_slots = chosen & (action == 1)
        draws = rng.integers(self.num_special, self.vocab_size - 1,
                             size=int(random_slots.sum()))
        masked[random_slots] = draws + (draws >= self.mask_id)  # skip mask
        results['masked_text_ids'] = masked
        results['text_mlm_mask'] = chosen
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(mask_ratio={self.mask_ratio}, '
                f'mask_id={self.mask_id}, vocab_size={self.vocab_size})')
