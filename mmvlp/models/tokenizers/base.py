"""What every visual tokenizer shares: raw-pixel inputs, encode/decode and
mmengine's ``forward(mode=...)`` contract."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel

from .compiled import FrozenCompiledForward
from .targets import PixelNorm

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def unwrap_ddp(module: nn.Module) -> nn.Module:
    """The module itself, or the one a DDP wrapper holds: QLIP stage 2
    trains under ``MMSeparateDistributedDataParallel``, which wraps each
    trainable child on its own and hides its attributes and methods."""
    return module.module if isinstance(
        module, nn.parallel.DistributedDataParallel) else module


class BaseVisualTokenizer(BaseModel):
    """Base class of the visual tokenizers.

    Inputs are raw pixels in [0, 255] (``(B, 3, H, W)``, RGB); a tokenizer
    normalises them with the ``mean``/``std`` it declares, so pipelines never
    have to know (and cannot get wrong) what it expects. Subclasses implement
    :meth:`encode` (token ids), :meth:`loss` and, where a decoder exists,
    :meth:`decode` and :meth:`reconstruct`.

    Args:
        mean (Sequence[float]): Pixel mean (0-255 units).
        std (Sequence[float]): Pixel std (0-255 units).
        data_preprocessor (dict, optional): Batches raw images; it must not
            normalise them. Defaults to an ``ImgDataPreprocessor`` that only
            converts BGR to RGB.
        init_cfg (dict, optional): mmengine init config.
    """
    #: What a checkpoint must give (see mmvlp.checkpoint.fit).
    # (parts a tokenizer lacks are left out; the others -- decoder,
    # pixel head, text tower -- are heads: needed to evaluate, not to
    # encode).
    essential_parts = {'encoder.': 'the image encoder',
                       'quant_embed.': 'the quantizer input projection',
                       'encode_task_layer.': 'the code projection',
                       'quantizer.': 'the quantizer (codebook)'}
    #: Loads through init_cfg must give what encoding needs.
    pretrained_purpose = 'encode'

    def __init__(self,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImgDataPreprocessor',
                                     bgr_to_rgb=True)
        if data_preprocessor.get('mean') is not None:
            raise ValueError(
                f'{type(self).__name__} normalises raw pixels itself; remove '
                'mean/std from its data_preprocessor and set them on the '
                'tokenizer (mean=..., std=...).')
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.norm = PixelNorm(mean, std)
        self._compile_encode = False
        self._compiled_encoder: Optional[FrozenCompiledForward] = None

    def compile_encode(self, enable: bool = True) -> 'BaseVisualTokenizer':
        """Run the encoder of :meth:`encode` compiled, weights frozen in.

        For a frozen tokenizer (an MIM target, offline tokenization): the
        encoder is compiled with ``torch.compile`` (inductor freezing, static
        shapes) at the first :meth:`encode`, which costs 10-30 s once per
        process and input shape, and then runs faster (ViT-B on CPU:
        1.1-1.15x, ``docs/benchmarks.md``). Token ids can differ from eager
        ones where two codes are equally near up to float rounding. Training
        (autograd on) always runs eagerly; if the weights change after
        compilation, or compiling fails, encoding falls back to eager with a
        warning (see :class:`~mmvlp.models.tokenizers.compiled.
        FrozenCompiledForward`). The compiled code keeps its own copy of the
        encoder weights.

        Args:
            enable (bool): Turn compilation on (default) or off.

        Returns:
            BaseVisualTokenizer: ``self``.
        """
        self._compile_encode = enable
        self._compiled_encoder = None
        return self

    @property
    def compiled_encoder(self) -> Optional[FrozenCompiledForward]:
        """After :meth:`compile_encode` and a first encode: the compiled
        encoder's wrapper (``compiled``, ``batch_size``,
        ``disabled_because``); None before, or without compilation."""
        return self._compiled_encoder

    def _encoder_tokens(self, images: torch.Tensor):
        return self.encoder(self.norm(images))

    def run_encoder(self, images: torch.Tensor):
        """``encoder(norm(images))``: the encoder's tokens and patch grid,
        compiled after :meth:`compile_encode` when autograd is off.

        Args:
            images (Tensor): ``(B, 3, H, W)`` raw pixels in [0, 255].
        """
        if not self._compile_encode:
            return self._encoder_tokens(images)
        if self._compiled_encoder is None:
            self._compiled_encoder = FrozenCompiledForward(
                self._encoder_tokens, [self.norm, self.encoder],
                type(self).__name__)
        return self._compiled_encoder(images)

    def __getstate__(self) -> dict:
        # The compiled code is process-local; copies compile their own.
        state = super().__getstate__()
        state['_compiled_encoder'] = None
        return state

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids."""
        return unwrap_ddp(self.quantizer).vocab_size

    @property
    def patch_size(self) -> int:
        """Pixels per token side."""
        return self.encoder.patch_size

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` raw pixels to ``(B, h, w)`` int64 token ids."""
        raise NotImplementedError

    def reconstruct(self, images: torch.Tensor) -> Optional[torch.Tensor]:
        """Pixel reconstructions in [0, 255], or None without a pixel
        decoder."""
        return None

    def loss(self,
             images: torch.Tensor,
             data_samples: Optional[list] = None) -> Dict[str, torch.Tensor]:
        """Training losses of a batch of raw-pixel images."""
        raise NotImplementedError

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor') -> Union[Dict[str, torch.Tensor],
                                               torch.Tensor, List[dict]]:
        """mmengine entry point.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` raw pixels.
            data_samples (list, optional): Per-image extras for ``'loss'``
                (e.g. ``text_ids`` for language alignment).
            mode (str): ``'loss'`` (training losses), ``'tensor'`` (token
                ids) or ``'predict'`` (per image: ``token_ids``,
                ``vocab_size`` and, with a pixel decoder, ``recon`` and
                ``image``, for the metrics).
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.encode(inputs)
        if mode == 'predict':
            ids = self.encode(inputs)
            recon = self.reconstruct(inputs)
            results = []
            for index, sample_ids in enumerate(ids):
                result = dict(token_ids=sample_ids, vocab_size=self.vocab_size)
                if recon is not None:
                    result.update(recon=recon[index], image=inputs[index])
                results.append(result)
            return results
        raise ValueError(f'Unknown mode {mode!r}; use loss, tensor or '
                         'predict.')
