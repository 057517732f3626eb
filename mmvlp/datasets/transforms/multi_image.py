"""Apply an image pipeline to each image of a multi-image sample."""
from typing import List, Optional

from mmcv.transforms import BaseTransform, Compose

from mmvlp.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ForEachImage(BaseTransform):
    """Run ``transforms`` on every image of a sample, each with its own
    random draws (e.g. the two images of an NLVR2 pair, augmented
    independently as in the official BEiT-3 code).

    ``results[key]`` is a list of image paths; each runs through the
    pipeline as ``{'img_path': path}`` and the output images are collected
    in ``results['img']`` (a list, which ``PackVLInputs`` packs as a list and
    mmpretrain's ``MultiModalDataPreprocessor`` stacks to ``(B, n, C, H,
    W)``). When the pipeline drops any image (``LoadImageSafe`` returns None
    for a bad file, counted), the whole sample is dropped and replaced.

    Args:
        transforms (list[dict]): The per-image pipeline, starting with a
            loader (``LoadImageSafe``).
        key (str): Field with the list of paths. Defaults to ``'img_path'``.
    """

    def __init__(self, transforms: List[dict], key: str = 'img_path') -> None:
        self.pipeline = Compose(
            [TRANSFORMS.build(t) if isinstance(t, dict) else t
             for t in transforms])
        self.key = key

    def transform(self, results: dict) -> Optional[dict]:
        paths = results[self.key]
        if isinstance(paths, str) or not paths:
            raise ValueError(f'ForEachImage: {self.key!r} must be a non-empty '
                             f'list of image paths, got {paths!r}.')
        images = []
        for path in paths:
            out = self.pipeline({'img_path': path})
            if out is None:
                return None
            images.append(out['img'])
        results['img'] = images
        results['img_shape'] = images[0].shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(key={self.key!r}, {self.pipeline})'
