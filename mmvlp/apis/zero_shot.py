"""Zero-shot image classification in mmpretrain's inferencer style::

    from mmvlp.apis import ZeroShotClassificationInferencer
    classify = ZeroShotClassificationInferencer(
        CONFIG, RETRIEVAL_CHECKPOINT, classes=['cat', 'dog'])
    classify('pet.jpg')[0]['pred_class']
    classify(['a.png', 'b.png'], show_dir='out/')   # image + top-5 picture
"""
import copy
import os.path as osp
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from mmpretrain.apis.base import BaseInferencer
from mmpretrain.structures import DataSample

from mmvlp.models.multimodal.encoder_loading import load_encoder_checkpoint
from mmvlp.registry import MODELS, build_scoped
from .encoder_models import (ImageBatcher, dual_encoder_cfg,
                             image_transforms, list_models, load_config,
                             read_image, tokenizer_args, warn_random)

__all__ = ['ZeroShotClassificationInferencer', 'zero_shot_cfg']

ImageInput = Union[str, np.ndarray]


def zero_shot_cfg(cfg: Config, classes=None, templates=None) -> dict:
    """A ``ZeroShotClassifier`` config from a zero-shot config (taken as it
    is) or from any BEiT-3 config (its dual encoder, its text tokenizer and
    data preprocessor); ``classes`` / ``templates`` override the config's."""
    if cfg.model.get('type', '').split('.')[-1] == 'ZeroShotClassifier':
        model = copy.deepcopy(cfg.model)
        if 'backbone' in model['encoder']:  # the checkpoint is loaded
            model['encoder']['backbone']['init_cfg'] = None
    else:
        encoder = dual_encoder_cfg(cfg)
        tokenizer = tokenizer_args(cfg)
        if tokenizer is None:
            raise ValueError('The config has no text tokenizer (a '
                             'TokenizeText step in its test pipeline).')
        model = dict(type='ZeroShotClassifier', encoder=encoder,
                     tokenizer=tokenizer,
                     data_preprocessor=encoder.get('data_preprocessor'))
        if model['data_preprocessor'] is None:
            model.pop('data_preprocessor')
    if classes is not None:
        model['classes'] = classes
    if templates is not None:
        model['templates'] = templates
    return model


class ZeroShotClassificationInferencer(BaseInferencer):
    """Classify images among class names never trained on.

    Args:
        model (str | Config): A zero-shot config (``ZeroShotClassifier``,
            e.g. ``configs/zero_shot/*.py``) or any BEiT-3 config with a
            text tokenizer (e.g. a retrieval config), by path or name.
        pretrained (str, optional): A checkpoint with retrieval heads: an
            mmvlp retrieval fine-tuning checkpoint or an official retrieval
            / ``itc`` file (also converted). Without heads it is an error.
        classes (str | Sequence[str], optional): Class names (or
            ``'imagenet'``, ``'cifar10'``, ``'cifar100'``); default: the
            config's.
        templates (str | Sequence[str], optional): Prompt templates with
            ``{}``, or a set of ``PROMPT_TEMPLATES``; default: the config's.
        device (str, optional): Device to run on.

    Example:
        >>> classify = ZeroShotClassificationInferencer(
        ...     'beit3-tiny-p8_demo-zero-shot-colors', CKPT)
        >>> classify('scene.png', topk=3)[0]['topk']
        [('red', ...), ('orange', ...), ('purple', ...)]
    """
    visualize_kwargs: set = {'show', 'show_dir', 'resize', 'topk',
                             'draw_score'}
    postprocess_kwargs: set = {'topk'}

    def __init__(self,
                 model: Union[str, Config],
                 pretrained: Optional[str] = None,
                 classes: Union[str, Sequence[str], None] = None,
                 templates: Union[str, Sequence[str], None] = None,
                 device: Union[str, torch.device, None] = None) -> None:
        cfg = load_config(model)
        with DefaultScope.overwrite_default_scope('mmvlp'):
            classifier = build_scoped(MODELS,
                                      zero_shot_cfg(cfg, classes, templates))
        classifier._config = cfg
        if pretrained is not None and hasattr(classifier.encoder,
                                              'backbone'):
            load_encoder_checkpoint(classifier.encoder, pretrained,
                                    require_heads=True)
        elif pretrained is not None:  # another dual encoder: its own keys
            load_checkpoint(classifier, pretrained, map_location='cpu',
                            strict=True, logger='current')
        else:
            warn_random(type(self).__name__)
        super().__init__(classifier, pretrained=False, device=device)

    @staticmethod
    def list_models(pattern: Optional[str] = None) -> List[str]:
        """Config names accepted as ``model``."""
        return list_models(pattern)

    @property
    def classes(self) -> tuple:
        return self.model.classes

    def _init_pipeline(self, cfg: Config) -> Callable:
        self.images = ImageBatcher(image_transforms(cfg))
        return self.images.prepare

    def preprocess(self, inputs: List[ImageInput], batch_size: int = 1):
        chunks = self._get_chunk_data(map(self.images.prepare, inputs),
                                      batch_size)
        yield from map(self.images.collate, chunks)

    @torch.no_grad()
    def forward(self, data: dict, **kwargs) -> List[DataSample]:
        data = self.model.data_preprocessor(data, False)
        images = data.get('inputs', data.get('images'))
        return self.model.predict(images)

    def postprocess(self, preds: List[DataSample], visualization,
                    return_datasamples: bool = False,
                    topk: int = 5) -> list:
        """Per image: ``pred_label``, ``pred_class``, ``pred_score`` and
        ``topk`` ``[(class, score), ...]``."""
        if return_datasamples:
            return preds
        results = []
        for sample in preds:
            scores, labels = sample.pred_score.topk(
                min(topk, len(self.classes)))
            results.append(dict(
                pred_label=int(labels[0]), pred_class=self.classes[
                    int(labels[0])], pred_score=float(scores[0]),
                topk=[(self.classes[int(i)], float(s))
                      for s, i in zip(scores, labels)],
                pred_scores=sample.pred_score.cpu().numpy()))
        return results

    def visualize(self,
                  ori_inputs: List[ImageInput],
                  preds: List[DataSample],
                  show: bool = False,
                  show_dir: Optional[str] = None,
                  resize: Optional[int] = 224,
                  topk: int = 5,
                  draw_score: bool = True):
        """Draw each image with its ``topk`` classes and scores
        (mmpretrain's ``UniversalVisualizer.visualize_cls``); saved as
        ``<show_dir>/<name>.png`` (the file's name, or the input's index for
        arrays)."""
        if not show and show_dir is None:
            return None
        from mmpretrain.visualization import UniversalVisualizer
        self.visualizer = self.visualizer or UniversalVisualizer()
        images = []
        for index, (image, sample) in enumerate(zip(ori_inputs, preds)):
            _, labels = sample.pred_score.topk(min(topk, len(self.classes)))
            shown = DataSample().set_pred_score(sample.pred_score)
            shown.set_field(labels, 'pred_label')
            name = (osp.splitext(osp.basename(image))[0]
                    if isinstance(image, str) else str(index))
            out_file = None
            if show_dir is not None:
                Path(show_dir).mkdir(parents=True, exist_ok=True)
                out_file = osp.join(show_dir, f'{name}.png')
            self.visualizer.visualize_cls(
                read_image(image)[..., ::-1], shown, classes=self.classes,
                draw_gt=False, draw_score=draw_score, resize=resize,
                show=show, name=name, out_file=out_file)
            images.append(self.visualizer.get_image())
        return images
