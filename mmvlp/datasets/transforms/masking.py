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
