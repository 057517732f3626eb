"""What the feature-extraction and zero-shot inferencers share: config
names, the dual encoder built from any BEiT-3 config, and the image / text
preprocessing of a config's test pipeline."""
import copy
import fnmatch
import glob
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmengine.logging import print_log
from mmengine.registry import DefaultScope

from mmvlp.registry import MODELS, TRANSFORMS, build_scoped

ConfigType = Union[str, Config]
#: Pipeline steps that the inferencers do themselves (loading, tokenizing,
#: packing).
_OWN_STEPS = ('LoadImageFromFile', 'LoadImageSafe', 'TokenizeText',
              'PackInputs', 'PackVLInputs', 'PackFields')
_PREPROCESSOR_KEYS = ('mean', 'std', 'to_rgb')


def configs_root() -> str:
    """The ``configs/`` folder of the mmvlp checkout."""
    return osp.abspath(osp.join(osp.dirname(__file__), '..', '..',
                                'configs'))


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Names of mmvlp's configs (file names without ``.py``) that an
    inferencer accepts instead of a path, optionally filtered by a wildcard
    ``pattern``."""
    names = sorted(
        osp.splitext(osp.basename(p))[0]
        for p in glob.glob(osp.join(configs_root(), '**', '*.py'),
                           recursive=True)
        if '_base_' not in p.split(osp.sep))
    return [n for n in names if pattern is None or fnmatch.fnmatch(
        n, pattern)]


def load_config(model: ConfigType) -> Config:
    """A ``Config`` from a path, a config name of :func:`list_models` or a
    ``Config`` (copied)."""
    if isinstance(model, Config):
        return copy.deepcopy(model)
    if osp.isfile(model):
        return Config.fromfile(model)
    matches = glob.glob(osp.join(configs_root(), '**', f'{model}.py'),
                        recursive=True)
    if len(matches) != 1:
        close = list_models(f'*{model}*')[:10]
        raise FileNotFoundError(
            f'{model!r} is neither a config file nor the name of one mmvlp '
            f'config ({len(matches)} found); similar names: {close} '
            '(list_models() lists them all).')
    return Config.fromfile(matches[0])


def _preprocessor_cfg(cfg: Config, model_cfg: dict) -> Optional[dict]:
    """The dual encoder's data preprocessor: the config's mean / std /
    channel order in ``MultiModalDataPreprocessor``."""
    given = model_cfg.get('data_preprocessor') or cfg.get(
        'data_preprocessor')
    if not given:
        return None  # BEiT3TaskModel's default (BEiT-3's 0.5 / 0.5)
    return dict(type='mmpretrain.MultiModalDataPreprocessor',
                **{k: given[k] for k in _PREPROCESSOR_KEYS if k in given})


def dual_encoder_cfg(cfg: Config) -> dict:
    """A ``BEiT3Retrieval`` config from any config with a BEiT-3 model.

    A retrieval model is taken as it is; the encoder of a
    ``ZeroShotClassifier`` too; any other model with a ``BEiT3`` backbone
    (pretraining, VQA, captioning, an mmpretrain classifier) gives its
    backbone to a new ``BEiT3Retrieval`` (whose heads only count when a
    checkpoint provides them). The backbone's ``init_cfg`` is dropped: the
    checkpoint given to the inferencer is loaded instead.
    """
    model = outer = copy.deepcopy(cfg.model)
    if model.get('type', '').split('.')[-1] == 'ZeroShotClassifier':
        model = model.encoder
        # The classifier's preprocessing (mean / std) is the encoder's.
        if not model.get('data_preprocessor'):
            model['data_preprocessor'] = _preprocessor_cfg(cfg, outer)
    if model.get('type', '').split('.')[-1] != 'BEiT3Retrieval':
        backbone = model.get('backbone')
        if not backbone or backbone.get('type', '').split(
                '.')[-1] != 'BEiT3':
            raise ValueError(
                f'The config\'s model ({model.get("type")}) has no BEiT3 '
                'backbone; give a config of a BEiT-3 model (e.g. configs/'
                'beit3/*retrieval*.py).')
        model = dict(type='BEiT3Retrieval', backbone=backbone,
                     data_preprocessor=_preprocessor_cfg(cfg, model))
    model['backbone']['init_cfg'] = None
    return model


def build_dual_encoder(cfg: Config):
    """Build :func:`dual_encoder_cfg` in mmvlp's scope."""
    with DefaultScope.overwrite_default_scope('mmvlp'):
        return build_scoped(MODELS, dual_encoder_cfg(cfg))


def _test_pipeline(cfg: Config) -> List[dict]:
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if loader is not None and loader.get('dataset', {}).get('pipeline'):
        return list(loader.dataset.pipeline)
    if cfg.get('test_pipeline'):
        return list(cfg.test_pipeline)
    raise ValueError('The config has no test pipeline (test_dataloader.'
                     'dataset.pipeline or test_pipeline), which gives the '
                     'image size and the text tokenizer; use a config of a '
                     'BEiT-3 task (e.g. configs/beit3/*retrieval*.py).')


def _step_name(step: dict) -> str:
    return step['type'].split('.')[-1] if isinstance(step['type'],
                                                     str) else ''


def image_transforms(cfg: Config) -> Compose:
    """The test pipeline's image transforms (resize, crop) without loading,
    tokenizing and packing."""
    steps = [s for s in _test_pipeline(cfg) if _step_name(s) not in _OWN_STEPS]
    return Compose([build_scoped(TRANSFORMS, s) for s in steps])


def tokenizer_args(cfg: Config) -> Optional[dict]:
    """``TextTokenizer`` arguments: the test pipeline's ``TokenizeText``, else
    ``model.tokenizer`` (a ``ZeroShotClassifier``); None when neither."""
    for step in _test_pipeline(cfg):
        if _step_name(step) == 'TokenizeText':
            return {k: step[k] for k in ('model_file', 'style', 'max_length')
                    if k in step}
    tokenizer = cfg.model.get('tokenizer')
    return dict(tokenizer) if isinstance(tokenizer, dict) else None


def read_image(image: Union[str, np.ndarray]) -> np.ndarray:
    """A BGR ``(H, W, 3)`` image from a path or an array (returned as it is);
    a file that cannot be used raises ``BadDataError`` with its reason."""
    if isinstance(image, np.ndarray):
        return image
    from mmvlp.datasets.transforms import read_image_file
    return read_image_file(image)


class ImageBatcher:
    """Images -> the batch a model's data preprocessor takes.

    Args:
        transforms (Callable): :func:`image_transforms`.
    """

    def __init__(self, transforms: Callable) -> None:
        self.transforms = transforms

    def prepare(self, image: Union[str, np.ndarray]) -> dict:
        """One image, transformed, as ``{'inputs': (3, H, W) uint8}``."""
        img = read_image(image)
        results = self.transforms(dict(img=img, img_shape=img.shape[:2],
                                       ori_shape=img.shape[:2]))
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        return dict(inputs=torch.from_numpy(
            np.ascontiguousarray(img.transpose(2, 0, 1))))

    def collate(self, prepared: Sequence[dict]) -> dict:
        return default_collate(list(prepared))


def preprocess_images(model, batch: dict) -> torch.Tensor:
    """Normalised ``(B, 3, H, W)`` images from :class:`ImageBatcher`'s
    batch, through the model's data preprocessor."""
    data = model.data_preprocessor(batch, False)
    images = data.get('images', data.get('inputs'))
    return images


def warn_random(name: str) -> None:
    print_log(f'{name}: no checkpoint given, so the model has random '
              'weights.', logger='current', level=30)


def split_batches(items: Sequence, batch_size: int) -> List[Sequence]:
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
    return [items[i:i + batch_size] for i in range(0, len(items),
                                                   batch_size)]


def as_list(inputs) -> list:
    """One input or a list of inputs -> a list."""
    if inputs is None:
        return []
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    return [inputs]


def text_batch(tokenizer, texts: Sequence[str],
               device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token ids and padding mask of texts, on ``device``."""
    ids, padding = tokenizer(list(texts))
    return ids.to(device), padding.to(device)
