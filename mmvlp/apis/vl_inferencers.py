"""Inferencers of the BEiT-3 vision-language models in mmpretrain's style.

Each takes an mmvlp config (path or ``Config``) and a fine-tuned checkpoint
and runs the config's test pipeline; mmpretrain's ``BaseInferencer`` drives
the batches and its ``UniversalVisualizer`` draws the results with
matplotlib (``show_dir=...`` saves them)::

    from mmvlp.apis import ImageCaptionInferencer
    captioner = ImageCaptionInferencer(CONFIG, CHECKPOINT)
    print(captioner('scene.png')[0]['pred_caption'])
"""
import copy
import os.path as osp
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.image import imread
from mmengine.config import Config
from mmengine.dataset import BaseDataset, Compose, default_collate
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmpretrain.apis import ImageCaptionInferencer as _MMPretrainCaption
from mmpretrain.apis import \
    VisualQuestionAnsweringInferencer as _MMPretrainVQA
from mmpretrain.apis.base import BaseInferencer
from mmpretrain.structures import DataSample

from mmvlp.registry import MODELS, TRANSFORMS, build_scoped
from mmvlp.checkpoint.loading import load_model_weights

ModelType = Union[BaseModel, str, Config]
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


def init_vl_model(model: ModelType,
                  checkpoint: Optional[str] = None,
                  device: Union[str, torch.device, None] = None,
                  strict: Optional[bool] = None) -> BaseModel:
    """Build an mmvlp model from a config and load a checkpoint.

    The backbone's ``init_cfg`` (pretraining weights) is dropped: the
    fine-tuned checkpoint holds every weight. Without a checkpoint the model
    keeps random weights (with a warning). The checkpoint is checked as
    ``tools/test.py`` checks it (:func:`~mmvlp.checkpoint.load_model_weights`,
    purpose ``'test'``): the backbone and the task head must load.

    Args:
        model (str | Config | BaseModel): Config path, ``Config`` or a built
            model (then only ``checkpoint`` is loaded).
        checkpoint (str, optional): A checkpoint of the whole model.
        device: Where the model goes.
        strict (bool, optional): None: the fit check; True: every key;
            False: load what fits (logged).

    Returns:
        BaseModel: The model in eval mode, with ``_config`` set.
    """
    if isinstance(model, BaseModel):
        built = model
        if not hasattr(built, '_config'):
            raise ValueError('A model passed to an mmvlp inferencer needs its '
                             'config as model._config (the test pipeline).')
    else:
        cfg = Config.fromfile(model) if isinstance(model, str) else \
            copy.deepcopy(model)
        cfg.model.backbone.init_cfg = None
        with DefaultScope.overwrite_default_scope('mmvlp'):
            built = build_scoped(MODELS, cfg.model)
        built._config = cfg
    if checkpoint is not None:
        load_model_weights(built, checkpoint, purpose='test', strict=strict)
    elif not isinstance(model, BaseModel):
        print_log(f'{type(built).__name__}: no checkpoint given, so the '
                  'model has random weights.', logger='current', level=30)
    if device is not None:
        built.to(device)
    return built.eval()


def build_test_pipeline(cfg: Config,
                        keep: Optional[Callable[[dict], bool]] = None
                        ) -> Compose:
    """The test pipeline of a config, built in mmvlp's scope (optionally
    only the steps ``keep`` accepts)."""
    steps = [s for s in cfg.test_dataloader.dataset.pipeline
             if keep is None or keep(s)]
    return Compose([build_scoped(TRANSFORMS, s) for s in steps])


def _is_text_step(step: dict) -> bool:
    return step['type'].split('.')[-1] == 'TokenizeText'


def _is_pack_step(step: dict) -> bool:
    return step['type'].split('.')[-1] == 'PackVLInputs'


def _load_image(image: Union[str, np.ndarray]) -> np.ndarray:
    img = imread(image)
    if img is None:
        raise ValueError(f'Cannot read the image {image!r}.')
    return img


class _ScopedInit:
    """Build the model with :func:`init_vl_model` before mmpretrain's
    ``BaseInferencer.__init__`` (which then only moves and stores it)."""

    def __init__(self,
                 model: ModelType,
                 pretrained: Optional[str] = None,
                 device: Union[str, torch.device, None] = None,
                 **kwargs) -> None:
        super().__init__(init_vl_model(model, pretrained, device),
                         pretrained=False, device=device, **kwargs)

    def _init_pipeline(self, cfg: Config) -> Callable:
        return build_test_pipeline(cfg)


class ImageCaptionInferencer(_ScopedInit, _MMPretrainCaption):
    """Caption images with a ``BEiT3Captioner`` (beam search as configured).

    Args:
        model (str | Config | BaseModel): The captioning config.
        pretrained (str, optional): The fine-tuned checkpoint.
        device (str, optional): Device to run on.

    Example:
        >>> inferencer = ImageCaptionInferencer(CONFIG, CHECKPOINT)
        >>> inferencer('scene.png')[0]
        {'pred_caption': 'a small red circle at the top left on a ...'}
        >>> inferencer(['a.png', 'b.png'], show_dir='work_dirs/captions')
    """


class VisualQuestionAnsweringInferencer(_ScopedInit, _MMPretrainVQA):
    """Answer questions about images with a ``BEiT3VQA`` model.

    Example:
        >>> inferencer = VisualQuestionAnsweringInferencer(CONFIG, CKPT)
        >>> inferencer('scene.png', 'what color is the circle')[0]
        {'question': 'what color is the circle', 'pred_answer': 'red'}
    """

    def preprocess(self, inputs: List[dict], batch_size: int = 1):
        def prepare(input_: dict) -> dict:
            return self.pipeline({**input_,
                                  'img': _load_image(input_['img'])})

        chunks = self._get_chunk_data(map(prepare, inputs), batch_size)
        yield from map(default_collate, chunks)

    def postprocess(self, preds: List[DataSample],
                    visualization: List[np.ndarray],
                    return_datasamples: bool = False) -> list:
        if return_datasamples:
            return preds
        return [dict(question=p.get('question'),
                     pred_answer=p.get('pred_answer'),
                     pred_score=float(p.pred_score.max())) for p in preds]


class _RetrievalInferencer(BaseInferencer):
    """What both retrieval directions share: the model, the image and text
    parts of the test pipeline, the prototype (gallery) features and the
    ranked results (each names its gallery entry under ``result_key``)."""
    result_key: str = ''

    def __init__(self,
                 model: ModelType,
                 pretrained: Optional[str] = None,
                 prototype=None,
                 device: Union[str, torch.device, None] = None,
                 prepare_batch_size: int = 16) -> None:
        if prototype is None:
            raise ValueError(f'{type(self).__name__} needs prototype= (the '
                             'gallery to search).')
        super().__init__(init_vl_model(model, pretrained, device),
                         pretrained=False, device=device)
        if not hasattr(self.model, 'encode_image'):
            raise ValueError(f'{type(self.model).__name__} is not a '
                             'retrieval model (BEiT3Retrieval).')
        self.prepare_batch_size = prepare_batch_size
        self.prototype, self.prototype_feats = self._prepare_prototype(
            prototype)

    def _init_pipeline(self, cfg: Config) -> Callable:
        self.image_pipeline = build_test_pipeline(
            cfg, lambda s: not _is_text_step(s))
        self.text_pipeline = build_test_pipeline(
            cfg, lambda s: _is_text_step(s) or _is_pack_step(s))
        return self.image_pipeline

    @torch.no_grad()
    def _encode_images(self, images: Sequence) -> torch.Tensor:
        feats = []
        for chunk in self._get_chunk_data(
                (self.image_pipeline({'img': _load_image(i)})
                 for i in images), self.prepare_batch_size):
            data = self.model.data_preprocessor(default_collate(chunk), False)
            feats.append(self.model.encode_image(data['images']))
        return torch.cat(feats)

    @torch.no_grad()
    def _encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        feats = []
        for chunk in self._get_chunk_data(
                (self.text_pipeline({'text': t}) for t in texts),
                self.prepare_batch_size):
            data = self.model.data_preprocessor(default_collate(chunk), False)
            ids, padding = self.model.texts(data['data_samples'])
            feats.append(self.model.encode_text(ids, padding))
        return torch.cat(feats)

    def save_prototype(self, path: str) -> None:
        """Save the gallery features (reuse them with ``prototype=path``
        of a ``.pth`` file)."""
        torch.save(dict(prototype=self.prototype,
                        feats=self.prototype_feats.cpu()), path)

    def _match(self, scores: torch.Tensor) -> List[DataSample]:
        return [DataSample().set_pred_score(s) for s in scores]

    def postprocess(self, preds: List[DataSample], visualization,
                    return_datasamples: bool = False, topk: int = 5) -> list:
        """The ``topk`` best gallery entries of each query, as dicts of
        ``match_score``, ``sample_idx`` and the entry under
        :attr:`result_key`."""
        if return_datasamples:
            return preds
        results = []
        for sample in preds:
            scores, indices = sample.pred_score.topk(
                min(topk, len(self.prototype)))
            results.append([
                {'match_score': float(s), 'sample_idx': int(i),
                 self.result_key: self.prototype[int(i)]}
                for s, i in zip(scores, indices)])
        return results


class TextToImageRetrievalInferencer(_RetrievalInferencer):
    """Find the images of a folder (or a list) that match a text, with a
    ``BEiT3Retrieval`` model (cosine similarity of the dual encoder).

    Args:
        model (str | Config | BaseModel): The retrieval config.
        pretrained (str, optional): The fine-tuned checkpoint.
        prototype (str | list[str]): A folder of images, a list of image
            paths, or a ``.pth`` file of :meth:`save_prototype`.
        device (str, optional): Device to run on.
        prepare_batch_size (int): Batch size when encoding the gallery.

    Example:
        >>> inferencer = TextToImageRetrievalInferencer(CONFIG, CKPT,
        ...                                             prototype='images/')
        >>> inferencer('a red circle at the top left', topk=5)[0][0]
        {'match_score': 0.83, 'sample_idx': 12, 'img_path': 'images/012.png'}
    """
    visualize_kwargs: set = {'topk', 'show', 'show_dir', 'figsize',
                             'draw_score'}
    postprocess_kwargs: set = {'topk'}
    result_key = 'img_path'

    def _prepare_prototype(self, prototype):
        if isinstance(prototype, str) and prototype.endswith('.pth'):
            saved = torch.load(prototype)
            return saved['prototype'], saved['feats'].to(self.model.device)
        if isinstance(prototype, str):
            if not osp.isdir(prototype):
                raise ValueError(f'prototype {prototype} is not a folder of '
                                 'images, a list of paths or a .pth file.')
            prototype = sorted(
                str(p) for p in Path(prototype).iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES)
        paths = list(prototype)
        if not paths:
            raise ValueError('The prototype holds no image.')
        return paths, self._encode_images(paths)

    def preprocess(self, inputs: List[str], batch_size: int = 1):
        chunks = self._get_chunk_data(
            (self.text_pipeline({'text': t}) for t in inputs), batch_size)
        yield from map(default_collate, chunks)

    @torch.no_grad()
    def forward(self, data: dict, **kwargs) -> List[DataSample]:
        data = self.model.data_preprocessor(data, False)
        ids, padding = self.model.texts(data['data_samples'])
        feats = self.model.encode_text(ids, padding)
        return self._match(
            self.model.similarity(feats, self.prototype_feats))

    def visualize(self, ori_inputs: List[str], preds: List[DataSample],
                  topk: int = 5, figsize=(12, 4), show: bool = False,
                  draw_score: bool = True, show_dir: Optional[str] = None):
        """Draw each query with its ``topk`` images and scores (mmpretrain's
        ``UniversalVisualizer``, matplotlib); saved as
        ``<show_dir>/<i>.png``."""
        if not show and show_dir is None:
            return None
        from mmpretrain.visualization import UniversalVisualizer
        self.visualizer = self.visualizer or UniversalVisualizer()
        gallery = BaseDataset(lazy_init=True, serialize_data=False)
        gallery.data_list = [dict(img_path=p, sample_idx=i)
                             for i, p in enumerate(self.prototype)]
        gallery._fully_initialized = True
        images = []
        for index, (text, sample) in enumerate(zip(ori_inputs, preds)):
            out_file = None
            if show_dir is not None:
                Path(show_dir).mkdir(parents=True, exist_ok=True)
                out_file = osp.join(show_dir, f'{index}.png')
            self.visualizer.visualize_t2i_retrieval(
                text, sample, gallery,
                topk=min(topk, len(self.prototype)),
                fig_cfg=dict(figsize=figsize), draw_score=draw_score,
                show=show, name=str(index), out_file=out_file)
            images.append(self.visualizer.get_image())
        return images


class ImageToTextRetrievalInferencer(_RetrievalInferencer):
    """Find the texts of a list that match an image, with a
    ``BEiT3Retrieval`` model.

    Args:
        model (str | Config | BaseModel): The retrieval config.
        pretrained (str, optional): The fine-tuned checkpoint.
        prototype (str | list[str]): A list of texts, a text file with one
            per line, or a ``.pth`` file of :meth:`save_prototype`.
        device (str, optional): Device to run on.
        prepare_batch_size (int): Batch size when encoding the texts.

    Example:
        >>> inferencer = ImageToTextRetrievalInferencer(
        ...     CONFIG, CKPT, prototype=['a red circle', 'a blue square'])
        >>> inferencer('scene.png', topk=1)[0][0]['text']
        'a red circle'
    """
    visualize_kwargs: set = {'topk', 'show', 'show_dir', 'resize',
                             'draw_score'}
    postprocess_kwargs: set = {'topk'}
    result_key = 'text'

    def _prepare_prototype(self, prototype):
        if isinstance(prototype, str) and prototype.endswith('.pth'):
            saved = torch.load(prototype)
            return saved['prototype'], saved['feats'].to(self.model.device)
        if isinstance(prototype, str):
            with open(prototype, encoding='utf-8') as f:
                prototype = [line.strip() for line in f if line.strip()]
        texts = [str(t) for t in prototype]
        if not texts:
            raise ValueError('The prototype holds no text.')
        return texts, self._encode_texts(texts)

    def preprocess(self, inputs: List, batch_size: int = 1):
        chunks = self._get_chunk_data(
            (self.image_pipeline({'img': _load_image(i)}) for i in inputs),
            batch_size)
        yield from map(default_collate, chunks)

    @torch.no_grad()
    def forward(self, data: dict, **kwargs) -> List[DataSample]:
        data = self.model.data_preprocessor(data, False)
        feats = self.model.encode_image(data['images'])
        return self._match(
            self.model.similarity(feats, self.prototype_feats))

    def visualize(self, ori_inputs: List, preds: List[DataSample],
                  topk: int = 5, show: bool = False,
                  resize: Optional[int] = 224, draw_score: bool = True,
                  show_dir: Optional[str] = None):
        """Draw each image with its ``topk`` texts and scores (mmpretrain's
        ``UniversalVisualizer``); saved as ``<show_dir>/<i>.png``."""
        if not show and show_dir is None:
            return None
        from mmpretrain.visualization import UniversalVisualizer
        self.visualizer = self.visualizer or UniversalVisualizer()
        images = []
        for index, (image, sample) in enumerate(zip(ori_inputs, preds)):
            out_file = None
            if show_dir is not None:
                Path(show_dir).mkdir(parents=True, exist_ok=True)
                out_file = osp.join(show_dir, f'{index}.png')
            self.visualizer.visualize_i2t_retrieval(
                _load_image(image)[..., ::-1], sample, self.prototype,
                topk=min(topk, len(self.prototype)), resize=resize,
                draw_score=draw_score, show=show, name=str(index),
                out_file=out_file)
            images.append(self.visualizer.get_image())
        return images


__all__ = [
    'init_vl_model', 'build_test_pipeline', 'ImageCaptionInferencer',
    'VisualQuestionAnsweringInferencer', 'TextToImageRetrievalInferencer',
    'ImageToTextRetrievalInferencer'
]
