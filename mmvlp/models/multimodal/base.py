"""What the BEiT-3 vision-language task models share."""
from abc import abstractmethod
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.model import BaseModel

from mmvlp.registry import MODELS, build_scoped
from ..backbones.beit3_reach import freeze_unused
from ..converters.unilm_beit3_tasks import OfficialCheckpointMixin

#: BEiT-3 normalises images with mean = std = 0.5 (timm's Inception
#: constants), here in 0-255 pixels.
BEIT3_MEAN = (127.5, 127.5, 127.5)
BEIT3_STD = (127.5, 127.5, 127.5)


def stack_field(data_samples: Sequence, key: str,
                device: Union[str, torch.device] = 'cpu',
                cat: bool = False) -> torch.Tensor:
    """One batch tensor from a field of every data sample.

    Args:
        data_samples (Sequence): mmpretrain ``DataSample`` s (or dicts).
        key (str): The field, e.g. ``'text_ids'``.
        device: Where the result goes.
        cat (bool): Concatenate along the first dimension (fields that hold
            several rows per sample, e.g. all captions of an image) instead
            of stacking.

    Returns:
        Tensor: ``(B, ...)`` (or ``(sum of rows, ...)`` with ``cat``).
    """
    if not data_samples:
        raise ValueError(f'No data samples to read {key!r} from.')
    values = []
    for sample in data_samples:
        value = sample.get(key) if hasattr(sample, 'get') else None
        if value is None:
            found = sorted(sample.keys()) if hasattr(sample, 'keys') else \
                type(sample).__name__
            raise ValueError(
                f'A data sample lacks {key!r}; add it to the pipeline\'s '
                f'PackVLInputs(algorithm_keys=[...]) (it has {found}).')
        values.append(torch.as_tensor(np.asarray(value)) if not isinstance(
            value, torch.Tensor) else value)
    out = torch.cat(values) if cat else torch.stack(values)
    return out.to(device)


class BEiT3TaskModel(OfficialCheckpointMixin, BaseModel):
    """Base of the BEiT-3 vision-language task models: a ``BEiT3`` backbone
    and mmengine's ``forward(inputs, data_samples, mode)`` contract with
    mmpretrain's ``MultiModalDataPreprocessor`` (which gives ``images``).

    Official BEiT-3 files (pretrained or fine-tuned, as released) load
    directly: ``load_from``, ``tools/test.py CONFIG FILE``,
    ``init_cfg=dict(type='Pretrained', checkpoint=FILE)`` on the model
    (backbone and head) and ``load_state_dict`` convert them on the way
    (:class:`~mmvlp.models.converters.unilm_beit3_tasks.
    OfficialCheckpointMixin`).
    Subclasses name the kinds of sequences they encode in
    ``backbone_sequences`` (``'image'``, ``'text'``, ``'pair'``); the
    backbone parameters those never run (the mask token, experts of other
    sequence kinds; see :mod:`mmvlp.models.backbones.beit3_reach`) are
    frozen at construction and listed in ``frozen_unused``: they would get
    no gradient, which ``DistributedDataParallel`` rejects.

    Args:
        backbone (dict): A ``BEiT3`` config.
        data_preprocessor (dict, optional): Defaults to mmpretrain's
            ``MultiModalDataPreprocessor`` with BEiT-3's mean/std (0.5).
        init_cfg (dict, optional): mmengine init config.
    """
    #: What a checkpoint must give (see mmvlp.checkpoint.fit).
    essential_parts = {'backbone.': 'the BEiT-3 backbone'}

    #: The kinds of sequences the task encodes.
    backbone_sequences: Tuple[str, ...] = ()

    def __init__(self,
                 backbone: dict,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='mmpretrain.MultiModalDataPreprocessor',
                mean=BEIT3_MEAN, std=BEIT3_STD, to_rgb=True)
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.backbone = build_scoped(MODELS, backbone)
        if getattr(self.backbone, 'vision_only', False):
            raise ValueError(f'{type(self).__name__} needs the text parts of '
                             'BEiT3; build the backbone with '
                             'vision_only=False.')
        self.frozen_unused = freeze_unused(
            self.backbone, self.backbone_sequences) \
            if self.backbone_sequences else []

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def texts(self, data_samples: Sequence,
              cat: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """``text_ids`` and ``text_padding_mask`` of the batch."""
        return (stack_field(data_samples, 'text_ids', self.device, cat),
                stack_field(data_samples, 'text_padding_mask', self.device,
                            cat).bool())

    def forward(self,
                images: Optional[torch.Tensor] = None,
                data_samples: Optional[List] = None,
                mode: str = 'loss'):
        """mmengine entry point.

        Args:
            images (Tensor): ``(B, 3, H, W)`` (``(B, 2, 3, H, W)`` for NLVR2),
                normalised by the data preprocessor.
            data_samples (list): The batch's ``DataSample`` s with the text
                and target fields.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
        """
        if mode == 'loss':
            return self.loss(images, data_samples)
        if mode == 'predict':
            return self.predict(images, data_samples)
        if mode == 'tensor':
            return self.extract_feat(images, data_samples)
        raise ValueError(f'Invalid mode {mode!r}; use "loss", "predict" or '
                         '"tensor".')

    @abstractmethod
    def loss(self, images: torch.Tensor, data_samples: List) -> dict:
        """Losses (and logged values) of a training batch."""

    @abstractmethod
    def predict(self, images: torch.Tensor, data_samples: List) -> list:
        """The data samples with the task's predictions."""

    @abstractmethod
    def extract_feat(self, images: torch.Tensor, data_samples: List):
        """Raw outputs (``mode='tensor'``)."""


__all__ = ['BEiT3TaskModel', 'stack_field', 'BEIT3_MEAN', 'BEIT3_STD']
