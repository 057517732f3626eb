"""Feature extraction from any BEiT-3 checkpoint, in mmpretrain's
inferencer style::

    from mmvlp.apis import FeatureExtractor
    extractor = FeatureExtractor(CONFIG_OR_NAME, CHECKPOINT)
    extractor(['a.png', 'b.png'])[0]['image_cls']          # images
    extractor(texts=['a red circle'])[0]['text_embed']      # texts
    extractor('a.png', texts='a red circle')[0]['fused_mean']  # pairs

The features are those of :mod:`mmvlp.models.multimodal.features`; the
retrieval embeddings (``image_embed`` / ``text_embed``) come when the
checkpoint has retrieval heads (``has_retrieval_heads``).
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmpretrain.apis.base import BaseInferencer

from mmvlp.models.multimodal.encoder_loading import load_encoder_checkpoint
from mmvlp.models.multimodal.features import (image_features, pair_features,
                                              text_features)
from .embedding_map import plot_embedding_map
from .encoder_models import (ImageBatcher, as_list, build_dual_encoder,
                             image_transforms, list_models, load_config,
                             preprocess_images, split_batches, text_batch,
                             tokenizer_args, warn_random)

__all__ = ['FeatureExtractor']

ImageInput = Union[str, np.ndarray]
_TOKEN_KEYS = ('image_tokens', 'text_tokens', 'fused_tokens')


class FeatureExtractor(BaseInferencer):
    """Image, text and image-text features of a BEiT-3 model.

    Args:
        model (str | Config): A config file, the name of an mmvlp config
            (:meth:`list_models`) or a ``Config``: any BEiT-3 model config
            with a test pipeline (its image size and text tokenizer are
            used), e.g. a retrieval config. Other task models give their
            backbone (see :func:`~mmvlp.apis.encoder_models.
            dual_encoder_cfg`).
        pretrained (str, optional): Any BEiT-3 checkpoint mmvlp loads:
            mmvlp pretraining or fine-tuning checkpoints, converted or
            official files. None keeps random weights (with a warning).
        device (str, optional): Device to run on.

    Attributes:
        has_retrieval_heads (bool): Whether the checkpoint provided the
            retrieval heads (then ``image_embed`` / ``text_embed`` are
            given).
    """

    def __init__(self,
                 model: Union[str, Config],
                 pretrained: Optional[str] = None,
                 device: Union[str, torch.device, None] = None) -> None:
        cfg = load_config(model)
        encoder = build_dual_encoder(cfg)
        encoder._config = cfg
        self.has_retrieval_heads = False
        if pretrained is not None:
            report = load_encoder_checkpoint(encoder, pretrained)
            self.has_retrieval_heads = not any(
                name.endswith('_head.weight')
                for name in report['missing_heads'])
        else:
            warn_random(type(self).__name__)
        super().__init__(encoder, pretrained=False, device=device)

    def _init_pipeline(self, cfg: Config):
        self.images = ImageBatcher(image_transforms(cfg))
        args = tokenizer_args(cfg)
        self.tokenizer = None
        if args is not None:
            from mmvlp.text import TextTokenizer
            self.tokenizer = TextTokenizer(**args)
        return self.images.prepare

    @staticmethod
    def list_models(pattern: Optional[str] = None) -> List[str]:
        """Config names accepted as ``model``."""
        return list_models(pattern)

    def feature_shape(self, name: str) -> tuple:
        """The shape of one input's feature ``name`` (fixed-size features;
        not the text / fused tokens, whose length varies)."""
        backbone = self.model.backbone
        dims = backbone.embed_dims
        height, width = backbone.patch_grid
        shapes = dict(
            image_cls=(dims, ), image_mean=(dims, ),
            patch_map=(dims, height, width),
            image_tokens=(1 + height * width, dims), text_cls=(dims, ),
            text_mean=(dims, ), fused_image_cls=(dims, ),
            fused_text_cls=(dims, ), fused_mean=(dims, ),
            image_embed=(self.model.vision_head.out_features, ),
            text_embed=(self.model.language_head.out_features, ))
        if name not in shapes:
            raise KeyError(f'{name!r} has no fixed shape; fixed-size '
                           f'features: {sorted(shapes)}.')
        return shapes[name]

    # ------------------------------------------------------------------
    def _kind(self, images: list, texts: list) -> str:
        if images and texts:
            if len(images) != len(texts):
                raise ValueError(f'{len(images)} images but {len(texts)} '
                                 'texts: pairs need one text per image.')
            return 'pair'
        if not images and not texts:
            raise ValueError('Give images, texts, or both (pairs).')
        return 'image' if images else 'text'

    @torch.no_grad()
    def extract_batch(self,
                      images: Optional[Sequence[ImageInput]] = None,
                      texts: Optional[Sequence[str]] = None,
                      return_tokens: bool = False
                      ) -> Dict[str, torch.Tensor]:
        """Batched features of one batch of images, texts or pairs.

        Args:
            images (Sequence, optional): Paths or BGR arrays.
            texts (Sequence[str], optional): Texts.
            return_tokens (bool): Also the hidden states.

        Returns:
            dict: ``(B, ...)`` tensors; ``text_padding_mask`` ``(B, L)``
            comes with texts (True at padding).
        """
        images, texts = as_list(images), as_list(texts)
        kind = self._kind(images, texts)
        model = self.model
        feats: Dict[str, torch.Tensor] = {}
        pixels = ids = padding = None
        if images:
            pixels = preprocess_images(model, self.images.collate(
                [self.images.prepare(i) for i in images]))
            feats.update(image_features(model, pixels,
                                        self.has_retrieval_heads,
                                        return_tokens))
        if texts:
            if self.tokenizer is None:
                raise ValueError('The config has no text tokenizer (no '
                                 'TokenizeText step in its test pipeline); '
                                 'use a vision-language config.')
            ids, padding = text_batch(self.tokenizer, texts, model.device)
            feats.update(text_features(model, ids, padding,
                                       self.has_retrieval_heads,
                                       return_tokens))
            feats['text_padding_mask'] = padding
        if kind == 'pair':
            feats.update(pair_features(model, pixels, ids, padding,
                                       return_tokens))
        return feats

    def __call__(self,
                 inputs: Union[ImageInput, Sequence, None] = None,
                 texts: Union[str, Sequence[str], None] = None,
                 batch_size: int = 1,
                 return_tokens: bool = False) -> List[Dict[str, np.ndarray]]:
        """Features per input.

        Args:
            inputs: An image (path or BGR array) or a list of them; with
                ``texts`` of the same length, the pairs.
            texts: A text or a list of texts.
            batch_size (int): Inputs per forward pass.
            return_tokens (bool): Also the hidden states (``image_tokens``,
                ``text_tokens`` and ``fused_tokens``, text padding removed).

        Returns:
            list[dict]: Per input, name -> ``np.ndarray`` (see
            :mod:`mmvlp.models.multimodal.features`).
        """
        images, text_list = as_list(inputs), as_list(texts)
        kind = self._kind(images, text_list)
        count = len(images) if images else len(text_list)
        results = []
        for chunk in split_batches(list(range(count)), batch_size):
            feats = self.extract_batch(
                [images[i] for i in chunk] if images else None,
                [text_list[i] for i in chunk] if text_list else None,
                return_tokens)
            results.extend(self._per_sample(feats, kind))
        return results

    @staticmethod
    def _per_sample(feats: Dict[str, torch.Tensor],
                    kind: str) -> List[Dict[str, np.ndarray]]:
        padding = feats.pop('text_padding_mask', None)
        out = []
        for row in range(len(next(iter(feats.values())))):
            sample = {}
            for key, value in feats.items():
                value = value[row]
                if key in _TOKEN_KEYS and padding is not None and \
                        key != 'image_tokens':
                    keep = ~padding[row]
                    if key == 'fused_tokens':
                        keep = torch.cat([keep.new_ones(
                            value.shape[0] - keep.shape[0]), keep])
                    value = value[keep]
                sample[key] = value.float().cpu().numpy()
            out.append(sample)
        return out

    def save_map(self,
                 results: Sequence[Dict[str, np.ndarray]],
                 out_file: str,
                 key: str = 'image_cls',
                 labels: Optional[Sequence] = None,
                 method: str = 'pca',
                 colors: Optional[dict] = None) -> np.ndarray:
        """Save a 2-D map (PCA or t-SNE) of one feature of ``results``,
        coloured by ``labels`` (:func:`~mmvlp.apis.embedding_map.
        plot_embedding_map`); returns the 2-D points."""
        if not results or key not in results[0]:
            raise KeyError(f'No {key!r} in the results (they have '
                           f'{sorted(results[0]) if results else []}).')
        features = np.stack([r[key].reshape(-1) for r in results])
        return plot_embedding_map(features, out_file, labels, method,
                                  title=f'{method.upper()} of {key}',
                                  colors=colors)

    def visualize(self, *args, **kwargs):
        raise NotImplementedError('Use save_map() for a picture of the '
                                  'embeddings.')

    def postprocess(self, *args, **kwargs):
        raise NotImplementedError('FeatureExtractor returns its results '
                                  'from __call__.')
