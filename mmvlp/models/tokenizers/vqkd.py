"""VQ-KD: vector-quantized knowledge distillation tokenizer (BEiT v2)."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

from mmvlp.registry import MODELS, build_scoped
from ..backbones.vit import ViTEncoder
from ..quantizers import QuantizerOutput
from .base import IMAGENET_MEAN, IMAGENET_STD, BaseVisualTokenizer
from .targets import check_raw_pixels


def task_layer(in_dims: int, out_dims: int) -> nn.Sequential:
    """``Linear -> Tanh -> Linear``, BEiT v2's encode/decode task layer."""
    return nn.Sequential(
        nn.Linear(in_dims, in_dims), nn.Tanh(), nn.Linear(in_dims, out_dims))


@MODELS.register_module()
class VQKD(BaseVisualTokenizer):
    """VQ-KD visual tokenizer: ViT encoder -> task layer -> normalised EMA
    codebook -> ViT decoder -> regression of a target's patch features.

    Inputs are raw pixels in [0, 255] (``(B, 3, H, W)``, RGB); the tokenizer
    normalises them with its declared ``mean``/``std``, so no pipeline can
    feed it wrongly scaled images (normalised inputs are refused).

    Args:
        encoder (dict): :class:`~mmvlp.models.backbones.ViTEncoder` arguments.
        quantizer (dict): Quantizer config, by default a
            ``NormEMAVectorQuantizer`` with 8192 x 32 codes.
        decoder (dict, optional): ``ViTEncoder`` arguments of the decoder (it
            reads the code map with patch size 1). None builds an encode-only
            tokenizer (as mmpretrain's ``VQKD``); it loads checkpoints with
            a decoder (e.g. the converted BEiT v2 release) by leaving the
            decoder out, with one log line.
        target (dict, optional): The regression target (``FrozenTeacher``,
            ``HOGTarget``, ``PixelTarget``); needed for training.
        target_dims (int, optional): Width of the decoder's output when no
            ``target`` is given (e.g. 512 for CLIP-taught official weights).
        mean (Sequence[float]): Pixel mean (0-255) the encoder expects.
        std (Sequence[float]): Pixel std the encoder expects.
        data_preprocessor (dict, optional): Batches raw images; must not
            normalise them.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 encoder: dict = dict(arch='base', img_size=224,
                                      patch_size=16),
                 quantizer: dict = dict(type='NormEMAVectorQuantizer',
                                        num_codes=8192, code_dims=32),
                 decoder: Optional[dict] = dict(
                     arch=dict(embed_dims=768, num_layers=1, num_heads=12,
                               feedforward_channels=3072)),
                 target: Optional[dict] = None,
                 target_dims: Optional[int] = None,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(mean, std, data_preprocessor, init_cfg)
        self.encoder = ViTEncoder(**encoder)
        self.quantizer = build_scoped(MODELS, quantizer)
        self.code_dims = self.quantizer.code_dims
        self.encode_task_layer = task_layer(self.encoder.embed_dims,
                                            self.code_dims)
        self.target = None if target is None else build_scoped(
            MODELS, target)
        if self.target is not None:
            target_dims = self.target.out_dims
        self.decoder = None
        if decoder is not None:
            if target_dims is None:
                raise ValueError('VQKD with a decoder needs a target (or '
                                 'target_dims) to size its output.')
            self.decoder = ViTEncoder(
                img_size=self.encoder.patch_grid,
                patch_size=1,
                in_channels=self.code_dims,
                **decoder)
            self.decode_task_layer = task_layer(self.decoder.embed_dims,
                                                target_dims)
        self.target_dims = target_dims

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """An encode-only tokenizer (``decoder=None``) leaves the decoder of
        a full checkpoint out (it only serves training)."""
        if self.decoder is None:
            parts = (prefix + 'decoder.', prefix + 'decode_task_layer.')
            dropped = [k for k in state_dict if k.startswith(parts)]
            for key in dropped:
                del state_dict[key]
            if dropped:
                print_log(f'VQKD (decoder=None): left out the {len(dropped)} '
                          'decoder tensors of the checkpoint; encoding does '
                          'not use them.', logger='current')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _quantize(self, images: torch.Tensor
                  ) -> Tuple[QuantizerOutput, Tuple[int, int]]:
        check_raw_pixels(images, type(self).__name__)
        tokens, grid = self.run_encoder(images)
        features = self.encode_task_layer(
            tokens[:, self.encoder.num_extra_tokens:])
        return self.quantizer(features), grid

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Token ids of raw-pixel images.

        Never updates the codebook, whatever the module's mode.

        Args:
            images (Tensor): ``(B, 3, H, W)`` pixels in [0, 255].

        Returns:
            Tensor: ``(B, h, w)`` int64 token ids.
        """
        training = self.quantizer.training
        self.quantizer.eval()
        try:
            output, grid = self._quantize(images)
        finally:
            self.quantizer.train(training)
        return output.indices.view(images.shape[0], *grid)

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, h, w, D)`` codes to ``(B, h*w, target_dims)`` features."""
        if self.decoder is None:
            raise RuntimeError('This VQKD has no decoder (encode-only).')
        tokens, _ = self.decoder(codes.permute(0, 3, 1, 2))
        return self.decode_task_layer(
            tokens[:, self.decoder.num_extra_tokens:])

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Reconstructed target features of token ids.

        Args:
            ids (Tensor): ``(B, h, w)`` token ids.

        Returns:
            Tensor: ``(B, h*w, target_dims)``.
        """
        return self._decode_codes(self.quantizer.indices_to_codes(ids))

    def loss(self,
             images: torch.Tensor,
             data_samples: Optional[list] = None) -> Dict[str, torch.Tensor]:
        """``1 - cos(decoded, target)`` + the quantizer's loss."""
        if self.target is None or self.decoder is None:
            raise RuntimeError('Training VQKD needs a decoder and a target; '
                               'set `decoder` and `target` in its config.')
        output, grid = self._quantize(images)
        codes = output.quantized.view(images.shape[0], *grid, self.code_dims)
        decoded = self._decode_codes(codes)
        with torch.no_grad():
            target = self.target(images)
        if target.shape != decoded.shape:
            raise ValueError(f'The target gives {tuple(target.shape)} but the '
                             f'decoder {tuple(decoded.shape)}: check that the '
                             'target uses the tokenizer\'s patch size.')
        cosine = F.cosine_similarity(decoded.float(), target.float(), dim=-1)
        losses = dict(loss_rec=(1 - cosine).mean(), loss_quant=output.loss)
        losses.update({k: v.detach().float() for k, v in output.stats.items()})
        return losses
