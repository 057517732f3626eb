"""Save images, token-id maps and reconstructions of a tokenizer."""
import os.path as osp
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from PIL import Image

from mmvlp.registry import HOOKS


def token_map_colors(ids: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Colour each token id with a fixed pseudo-random RGB colour.

    Args:
        ids (Tensor): ``(B, h, w)`` token ids.
        seed (int): Seed of the palette (same id, same colour, every call).

    Returns:
        Tensor: ``(B, 3, h, w)`` uint8 colours.
    """
    generator = torch.Generator().manual_seed(seed)
    multipliers = torch.randint(1, 2**20, (3, ), generator=generator)
    hashed = (ids.cpu()[:, None] * multipliers.view(1, 3, 1, 1) +
              multipliers.view(1, 3, 1, 1) // 7) % 251
    return hashed.to(torch.uint8)


@HOOKS.register_module()
class TokenizerVisualizationHook(Hook):
    """After validation, save a grid of the first validation images: the
    input, its token-id map (one colour per id) and, for tokenizers with a
    pixel decoder, the reconstruction.

    The grid goes to the runner's visualizer (``add_image``), so every
    backend receives it (with ``LocalVisBackend``: a PNG under
    ``<work_dir>/<timestamp>/vis_data/vis_image``), and, with ``out_file``,
    to ``<work_dir>/<out_file>`` (overwritten at every validation: the
    latest grid under a name that does not change).

    Args:
        num_images (int): Images in the grid.
        name (str): Image name in the backends.
        out_file (str, optional): PNG file name under the work dir.
    """
    priority = 'LOW'

    def __init__(self, num_images: int = 8,
                 name: str = 'tokenizer',
                 out_file: Optional[str] = None) -> None:
        self.num_images = num_images
        self.name = name
        self.out_file = out_file
        self._batch: Optional[dict] = None

    def before_val_epoch(self, runner) -> None:
        self._batch = None

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        if batch_idx == 0:
            self._batch = data_batch

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._batch is None:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        data = model.data_preprocessor(self._batch, False)
        images = data['inputs'][:self.num_images].float()
        grid = self.make_grid(model, images)
        runner.visualizer.add_image(self.name, grid, step=runner.iter)
        if self.out_file:
            path = osp.join(runner.work_dir, self.out_file)
            Image.fromarray(grid).save(path)
            runner.logger.info(f'{self.name}: {len(images)} validation '
                               'images, their token maps (and '
                               f'reconstructions) drawn to {path}')
        self._batch = None

    @staticmethod
    @torch.no_grad()
    def make_grid(model, images: torch.Tensor) -> np.ndarray:
        """Rows of ``[image | token map | reconstruction]`` as uint8 HWC."""
        ids = model.encode(images)
        columns = [images.clamp(0, 255).to(torch.uint8).cpu()]
        token_map = F.interpolate(
            token_map_colors(ids).float(), size=images.shape[-2:],
            mode='nearest')
        columns.append(token_map.to(torch.uint8))
        recon = model.reconstruct(images)
        if recon is not None:
            columns.append(recon.round().clamp(0, 255).to(torch.uint8).cpu())
        rows = torch.cat(columns, dim=3)  # side by side
        grid = torch.cat(list(rows), dim=1)  # images stacked vertically
        return grid.permute(1, 2, 0).numpy()
