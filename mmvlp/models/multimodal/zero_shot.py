"""Zero-shot image classification with a contrastive dual encoder.

Class names become texts through prompt templates ("a photo of a {}."), the
texts of a class are encoded and averaged into one l2-normalised class
embedding, and an image is scored against every class by the cosine
similarity of its embedding, scaled by the encoder's logit scale and
softmaxed (as CLIP and the BEiT-3 paper evaluate ImageNet zero-shot).
"""
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from mmvlp.registry import MODELS, build_scoped
from .base import BEIT3_MEAN, BEIT3_STD

__all__ = ['ZeroShotClassifier', 'PROMPT_TEMPLATES', 'CLASS_NAME_SETS',
           'build_prompts']

#: Named prompt template sets (``{}`` is the class name).
PROMPT_TEMPLATES: Dict[str, tuple] = dict(
    # A short generic set for photographs.
    default=('a photo of a {}.', 'a picture of a {}.', 'an image of a {}.',
             'a close-up photo of a {}.', 'a cropped photo of the {}.',
             'a photo of the large {}.', 'a photo of the small {}.',
             'a bright photo of a {}.', 'a dark photo of a {}.',
             'a drawing of a {}.'),
    # The class name alone.
    name=('{}', ),
)


def _mmpretrain_classes(name: str) -> tuple:
    from mmpretrain.datasets import categories
    table = dict(imagenet='IMAGENET_SIMPLE_CATEGORIES',
                 cifar10='CIFAR10_CATEGORIES',
                 cifar100='CIFAR100_CATEGORIES')
    return tuple(c.replace('_', ' ') for c in getattr(categories,
                                                      table[name]))


#: Class-name sets that ``classes='<name>'`` selects (mmpretrain's lists;
#: ImageNet's short names as CLIP uses them).
CLASS_NAME_SETS = ('imagenet', 'cifar10', 'cifar100')

Template = Union[str, Callable[[str], str]]


def build_prompts(class_name: str, templates: Sequence[Template]) -> List[str]:
    """The texts of one class: every template filled with its name."""
    return [t(class_name) if callable(t) else t.format(class_name)
            for t in templates]


@MODELS.register_module()
class ZeroShotClassifier(BaseModel):
    """Classify images by matching them with texts that name the classes.

    The encoder is any dual encoder with this interface (``BEiT3Retrieval``;
    other models plug in by providing the same three members):

    - ``encode_image(images) -> (B, D)`` l2-normalised embeddings,
    - ``encode_text(text_ids, text_padding_mask) -> (T, D)`` l2-normalised,
    - ``logit_scale``: the log of the similarity scale (learned, as CLIP).

    Texts are tokenized by ``tokenizer``: a callable ``texts -> (ids,
    padding_mask)``; a dict builds mmvlp's SentencePiece ``TextTokenizer``
    (or, with a ``type``, a tokenizer registered in mmvlp's ``MODELS``);
    None takes the encoder's ``tokenizer``. For class ``k`` with templates
    ``t_1..t_T``, the class embedding is ``normalize(mean_j encode_text(
    t_j(name_k)))``; an image's scores are ``softmax(exp(logit_scale) *
    image_embed @ class_embeds.T)``, in ``pred_score`` (mmpretrain's
    ``Accuracy`` reads them) with the best class in ``pred_label``.

    Loading: ``tools/test.py CONFIG CHECKPOINT`` (``load_from``) accepts the
    encoder's own checkpoints as well as this model's: a retrieval
    fine-tuning checkpoint of mmvlp, an official retrieval / ``itc`` file, or
    a converted one (their parameters are placed under ``encoder.``).

    Args:
        encoder (dict | nn.Module): The dual encoder (e.g.
            ``dict(type='BEiT3Retrieval', backbone=...)``).
        tokenizer (dict | callable, optional): See above.
        classes (str | Sequence[str], optional): Class names in label order,
            or one of :data:`CLASS_NAME_SETS`. None: set them later
            (:meth:`set_classes`, or ``ZeroShotClassesHook`` from the test
            dataset).
        templates (str | Sequence): Prompt templates with one ``{}`` (or
            callables ``name -> text``), or a key of
            :data:`PROMPT_TEMPLATES`. Defaults to ``'default'``.
        text_batch_size (int): Prompts encoded at once. Defaults to 256.
        data_preprocessor (dict, optional): Defaults to mmpretrain's
            ``ClsDataPreprocessor`` with BEiT-3's mean/std (0.5), RGB.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 encoder: Union[dict, torch.nn.Module],
                 tokenizer: Union[dict, Callable, None] = None,
                 classes: Union[str, Sequence[str], None] = None,
                 templates: Union[str, Sequence[Template]] = 'default',
                 text_batch_size: int = 256,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='mmpretrain.ClsDataPreprocessor',
                                     mean=BEIT3_MEAN, std=BEIT3_STD,
                                     to_rgb=True)
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.encoder = build_scoped(MODELS, encoder) if isinstance(
            encoder, dict) else encoder
        missing = [name for name in ('encode_image', 'encode_text',
                                     'logit_scale')
                   if not hasattr(self.encoder, name)]
        if missing:
            raise ValueError(
                f'{type(self.encoder).__name__} cannot be a zero-shot '
                f'encoder: it lacks {missing} (needs encode_image, '
                'encode_text and logit_scale, as BEiT3Retrieval).')
        if tokenizer is None:
            tokenizer = getattr(self.encoder, 'tokenizer', None)
            if tokenizer is None:
                raise ValueError(
                    'ZeroShotClassifier needs a tokenizer (e.g. '
                    "tokenizer=dict(model_file='beit3.spm', style='xlmr', "
                    'max_length=64)).')
        if isinstance(tokenizer, dict) and 'type' in tokenizer:
            tokenizer = build_scoped(MODELS, tokenizer)
        elif isinstance(tokenizer, dict):
            from mmvlp.text import TextTokenizer
            tokenizer = TextTokenizer(**tokenizer)
        if not callable(tokenizer):
            raise TypeError(f'tokenizer must be a dict or a callable, got '
                            f'{type(tokenizer).__name__}.')
        self.tokenizer = tokenizer
        if text_batch_size < 1:
            raise ValueError(f'text_batch_size must be >= 1, got '
                             f'{text_batch_size}.')
        self.text_batch_size = text_batch_size
        self.classes: Optional[tuple] = None
        self.templates: tuple = ()
        self._class_embeds: Optional[torch.Tensor] = None
        self.set_classes(classes, templates)

    # ------------------------------------------------------------------
    # Classes and their embeddings
    # ------------------------------------------------------------------
    def set_classes(self,
                    classes: Union[str, Sequence[str], None],
                    templates: Union[str, Sequence[Template], None] = None
                    ) -> None:
        """Change the class names (and the templates, when given); the class
        embeddings are computed again at the next prediction."""
        if isinstance(templates, str):
            if templates not in PROMPT_TEMPLATES:
                raise ValueError(
                    f'Unknown template set {templates!r}; use one of '
                    f'{sorted(PROMPT_TEMPLATES)} or a list of templates.')
            templates = PROMPT_TEMPLATES[templates]
        if templates is not None:
            templates = tuple(templates)
            if not templates:
                raise ValueError('templates is empty.')
            for template in templates:
                if not callable(template) and (
                        not isinstance(template, str)
                        or template.count('{}') != 1):
                    raise ValueError(
                        f'Template {template!r} must hold "{{}}" once (where '
                        'the class name goes) or be a callable.')
            self.templates = templates
        if isinstance(classes, str):
            if classes not in CLASS_NAME_SETS:
                raise ValueError(
                    f'Unknown class-name set {classes!r}; use one of '
                    f'{CLASS_NAME_SETS} or a list of names.')
            classes = _mmpretrain_classes(classes)
        if classes is not None:
            classes = tuple(str(c) for c in classes)
            if not classes:
                raise ValueError('classes is empty.')
        self.classes = classes
        self._class_embeds = None

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """l2-normalised ``(T, D)`` embeddings of texts (in batches of
        ``text_batch_size``)."""
        feats = []
        for start in range(0, len(texts), self.text_batch_size):
            ids, padding = self.tokenizer(
                list(texts[start:start + self.text_batch_size]))
            device = next(self.encoder.parameters()).device
            feats.append(self.encoder.encode_text(ids.to(device),
                                                  padding.to(device)))
        return torch.cat(feats)

    @torch.no_grad()
    def class_embeddings(self) -> torch.Tensor:
        """``(K, D)``: per class, the normalised mean of its prompts'
        normalised embeddings (cached until the classes, templates or
        weights change)."""
        if self.classes is None:
            raise ValueError(
                'ZeroShotClassifier has no classes: set model.classes in '
                'the config, call set_classes(), or add '
                "dict(type='ZeroShotClassesHook') to custom_hooks to take "
                "them from the test dataset's metainfo.")
        if self._class_embeds is None:
            texts = [text for name in self.classes
                     for text in build_prompts(name, self.templates)]
            feats = self.encode_texts(texts).view(len(self.classes),
                                                  len(self.templates), -1)
            feats = F.normalize(feats, dim=-1).mean(dim=1)
            self._class_embeds = F.normalize(feats, dim=-1)
        return self._class_embeds

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Accept the encoder's checkpoints (see the class docstring) and
        forget the class embeddings of the old weights."""
        self._class_embeds = None
        own = [k for k in state_dict if k.startswith(prefix)]
        if own and not any(k.startswith(prefix + 'encoder.') for k in own):
            from .encoder_loading import encoder_state_dict
            from ..backbones.beit3_checkpoint import extract_state_dict
            given = extract_state_dict(
                {k[len(prefix):]: state_dict.pop(k) for k in own})
            if hasattr(self.encoder, 'backbone'):  # any BEiT-3 layout
                given, _ = encoder_state_dict(given)
                self._check_heads(given)
            for key, value in given.items():
                state_dict[f'{prefix}encoder.{key}'] = value
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_heads(self, state: dict) -> None:
        """A checkpoint without the encoder's projection heads would leave
        them random: say so instead of classifying with them."""
        from .encoder_loading import RETRIEVAL_HEAD_NAMES
        own = dict(self.encoder.named_parameters())
        missing = [n for n in RETRIEVAL_HEAD_NAMES[:2]
                   if n in own and n not in state]
        if missing:
            raise ValueError(
                f'The checkpoint has no {" / ".join(missing)}: zero-shot '
                'matching needs a retrieval or itc checkpoint (an official '
                'retrieval / itc file as downloaded, or an mmvlp '
                'BEiT3Retrieval checkpoint, or one converted by tools/'
                'model_converters/beit3_unilm_to_mmvlp.py). Files of '
                'earlier versions of that converter keep the heads aside '
                'under "task_heads", which load_from does not read: convert '
                'the official file again, or use '
                'ZeroShotClassificationInferencer, which reads them.')

    # ------------------------------------------------------------------
    # mmengine interface
    # ------------------------------------------------------------------
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, K)``: ``exp(logit_scale) * cos(image, class)``."""
        image_embeds = self.encoder.encode_image(images)
        scale = torch.as_tensor(self.encoder.logit_scale).exp()
        return scale * image_embeds @ self.class_embeddings().to(
            image_embeds).t()

    def forward(self,
                inputs: Optional[torch.Tensor] = None,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'predict',
                images: Optional[torch.Tensor] = None):
        """``mode='predict'``: data samples with ``pred_score`` /
        ``pred_label``; ``'tensor'``: the logits ``(B, K)``. There is no
        ``'loss'``: the model is not trained.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` from ``ClsDataPreprocessor``.
            data_samples (list, optional): The batch's data samples.
            mode (str): ``'predict'`` or ``'tensor'``.
            images (Tensor, optional): The same as ``inputs``, by the name
                ``MultiModalDataPreprocessor`` gives.
        """
        images = inputs if inputs is not None else images
        if images is None:
            raise ValueError('ZeroShotClassifier needs images (inputs).')
        if mode == 'tensor':
            return self.logits(images)
        if mode == 'predict':
            return self.predict(images, data_samples)
        raise ValueError(f'Invalid mode {mode!r} for ZeroShotClassifier: '
                         'use "predict" or "tensor" (zero-shot models are '
                         'not trained).')

    @torch.no_grad()
    def predict(self, images: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """Softmaxed class scores and the best class of each image."""
        scores = self.logits(images).softmax(dim=-1)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(scores))]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples
