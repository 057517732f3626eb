"""BEiT-3 visual question answering (classification over an answer
vocabulary)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmvlp.datasets.vl_formats import read_answer_vocab
from mmvlp.registry import MODELS
from ..heads import Pooler, VQAHead
from .base import BEiT3TaskModel


@MODELS.register_module()
class BEiT3VQA(BEiT3TaskModel):
    """VQA with BEiT-3: the image and the question are encoded together
    (image tokens, then question tokens), the vision CLS goes through the
    ``pooler`` (LayerNorm -> Linear -> tanh) and the ``head`` (Linear(C, 2C)
    -> LayerNorm -> GELU -> Linear(2C, answers)), trained with binary
    cross-entropy on the soft answer scores (mean over entries x the number
    of answers, as the official code). Parameter names follow the official
    ``BEiT3ForVisualQuestionAnswering``; its backbones have no final norm
    (``final_norm=False``).

    Args:
        backbone (dict): A ``BEiT3`` config.
        answers (str | Sequence[str]): The answer vocabulary: a file
            (``answer2label.txt`` or one answer per line) or a list; its
            length is the number of classes.
        num_classes (int, optional): Checked against the vocabulary when
            both are given.
        data_preprocessor (dict, optional): See :class:`BEiT3TaskModel`.
        init_cfg (dict, optional): mmengine init config.
    """
    #: What evaluation needs and fine-tuning starts fresh.
    head_parts = {'pooler.': 'the VQA pooler',
                  'head.': 'the answer classifier'}

    # Image+question sequences.
    backbone_sequences = ('pair', )

    def __init__(self,
                 backbone: dict,
                 answers: Union[str, Sequence[str]],
                 num_classes: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, data_preprocessor, init_cfg)
        self.answers = read_answer_vocab(answers) if isinstance(
            answers, str) else [str(a) for a in answers]
        if not self.answers:
            raise ValueError('The answer vocabulary is empty.')
        if num_classes is not None and num_classes != len(self.answers):
            raise ValueError(f'num_classes={num_classes} but the answer '
                             f'vocabulary has {len(self.answers)} answers.')
        self.num_classes = len(self.answers)
        dims = self.backbone.embed_dims
        self.pooler = Pooler(dims)
        self.head = VQAHead(dims, self.num_classes)

    def extract_feat(self, images: torch.Tensor,
                     data_samples: List[DataSample]) -> torch.Tensor:
        """Answer logits ``(B, num_classes)``."""
        text_ids, padding = self.texts(data_samples)
        hidden = self.backbone.forward_sequence(
            images=images, text_ids=text_ids, text_padding_mask=padding)
        return self.head(self.pooler(hidden))

    def targets(self, data_samples: List[DataSample]) -> torch.Tensor:
        """Soft targets ``(B, num_classes)`` from ``answer_labels`` /
        ``answer_scores``."""
        targets = torch.zeros(len(data_samples), self.num_classes,
                              device=self.device)
        for row, sample in enumerate(data_samples):
            labels = torch.as_tensor(sample.answer_labels,
                                     dtype=torch.long).view(-1)
            if labels.numel() and (labels.min() < 0 or
                                   labels.max() >= self.num_classes):
                raise ValueError(f'Answer labels {labels.tolist()} are '
                                 f'outside the {self.num_classes} answers.')
            targets[row, labels.to(self.device)] = torch.as_tensor(
                sample.answer_scores, dtype=torch.float).view(-1).to(
                    self.device)
        return targets

    def loss(self, images: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        logits = self.extract_feat(images, data_samples)
        targets = self.targets(data_samples)
        loss = F.binary_cross_entropy_with_logits(
            logits.float(), targets) * self.num_classes
        with torch.no_grad():
            best = logits.argmax(-1)
            score = targets.gather(1, best[:, None]).mean() * 100
        return dict(loss_vqa=loss, vqa_score=score)

    def predict(self, images: torch.Tensor,
                data_samples: List[DataSample]) -> List[DataSample]:
        """``pred_answer`` (the best answer) and ``pred_score`` (sigmoid of
        every answer) for mmpretrain's ``VQAAcc``."""
        logits = self.extract_feat(images, data_samples)
        scores = logits.float().sigmoid()
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score)
            sample.pred_answer = self.answers[int(score.argmax())]
        return data_samples


__all__ = ['BEiT3VQA']
