"""Datasets of the vision-language fine-tuning tasks: image-text retrieval,
captioning, visual question answering and NLVR2.

They read the formats users already have (see
:mod:`mmvlp.datasets.vl_formats`) and give samples for the pipelines of
``configs/_base_/datasets/*`` (``LoadImageSafe`` / ``ForEachImage``,
``TokenizeText``, ``PackVLInputs``).
"""
from collections import Counter
from typing import Dict, List, Optional, Sequence

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmvlp.registry import DATASETS
from .vl_formats import (load_caption_images, load_nlvr2, load_vqa,
                         load_vqa_index, read_answer_vocab, vqa_soft_score)

CAPTION_FORMATS = ('karpathy', 'beit3', 'jsonl')


class _VLDataset(BaseDataset):
    """Shared bookkeeping: records skipped while reading the annotations
    (``load_skips``, read by :class:`~mmvlp.engine.DataSkipHook`)."""

    def __init__(self, *args, **kwargs) -> None:
        self.load_skips: Dict[str, int] = {}
        self.num_skipped = 0
        super().__init__(*args, **kwargs)

    def _report_skips(self, skips: Dict[str, int], kept: int,
                      what: str) -> None:
        skips = {k: v for k, v in skips.items() if v}
        self.load_skips = skips
        self.num_skipped = sum(skips.values())
        if self.num_skipped:
            detail = ', '.join(f'{k} {v}' for k, v in skips.items())
            print_log(f'{type(self).__name__}({self.ann_file}): skipped '
                      f'{self.num_skipped} record(s) ({detail}); {kept} '
                      f'{what} kept.', logger='current', level=30)


def _check_format(ann_format: Optional[str]) -> None:
    if ann_format is not None and ann_format not in CAPTION_FORMATS:
        raise ValueError(f'ann_format must be one of {CAPTION_FORMATS}, got '
                         f'{ann_format!r}.')


class _CaptionFileDataset(_VLDataset):
    """A dataset read from a caption file (Karpathy JSON, BEiT-3 index
    jsonl or an ``{"image", "caption"}`` jsonl list) with
    :func:`load_caption_images`; the arguments are those of its subclasses
    (:class:`ImageTextRetrievalDataset`, :class:`ImageCaptionDataset`)."""

    def __init__(self,
                 ann_file: str,
                 ann_format: Optional[str] = None,
                 splits: Optional[Sequence[str]] = None,
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 test_mode: bool = False,
                 **kwargs) -> None:
        _check_format(ann_format)
        self.ann_format = ann_format
        self.splits = tuple(splits) if splits else None
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=data_prefix, test_mode=test_mode,
                         **kwargs)


@DATASETS.register_module()
class ImageTextRetrievalDataset(_CaptionFileDataset):
    """Image-text retrieval (COCO / Flickr30K Karpathy splits, BEiT-3 index
    files, ``{"image", "caption"}`` jsonl lists).

    Training gives one sample per caption: ``img_path``, ``text`` and
    ``image_id`` (the image's index). With ``test_mode=True`` a sample is an
    image with all its captions, in the layout of mmpretrain's retrieval
    datasets and its ``RetrievalValLoop``: ``text`` (list), ``gt_text_id``
    (global indices of its captions), ``gt_image_id``, plus ``img_size`` and
    ``text_size`` on the dataset.

    Args:
        ann_file (str): ``dataset_coco.json`` / ``dataset_flickr30k.json``,
            ``coco_retrieval.<split>.jsonl`` / ``flickr30k.<split>.jsonl`` or
            a jsonl list.
        ann_format (str, optional): ``'karpathy'``, ``'beit3'`` or
            ``'jsonl'``; detected from the file when None.
        splits (Sequence[str], optional): Karpathy splits, e.g.
            ``('train', 'restval')`` (COCO training as BEiT-3) or
            ``('test',)``.
        data_root (str): Root of ``ann_file`` and the images.
        data_prefix (dict): ``dict(img_path=...)``, the image folder (e.g.
            ``'flickr30k-images'``; COCO's Karpathy file names its folders).
        test_mode (bool): One sample per image (evaluation).
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.img_size = 0
        self.text_size = 0
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        images, empty = load_caption_images(
            self.ann_file, self.ann_format, self.splits,
            self.data_prefix.get('img_path', ''))
        without = [im for im in images if not im['captions']]
        images = [im for im in images if im['captions']]
        self._report_skips(dict(empty_caption=empty + len(without)),
                           len(images), 'images')
        if not images:
            where = f' in splits {self.splits}' if self.splits else ''
            raise ValueError(f'{self.ann_file} holds no image with a '
                             f'caption{where}.')
        data_list, text_id = [], 0
        for index, image in enumerate(images):
            captions = image['captions']
            if self.test_mode:
                data_list.append(dict(
                    img_path=image['img_path'], image_id=index,
                    ori_image_id=image['image_id'], text=list(captions),
                    gt_text_id=list(range(text_id, text_id + len(captions))),
                    gt_image_id=[index] * len(captions)))
            else:
                data_list += [dict(img_path=image['img_path'], image_id=index,
                                   text=caption) for caption in captions]
            text_id += len(captions)
        return data_list

    def full_init(self) -> None:
        """Load, subset (``indices``) and count the test set's images and
        texts (``img_size`` / ``text_size`` for the retrieval loops)."""
        if self._fully_initialized:
            return
        super().full_init()
        if not self.test_mode:
            self.img_size = len({self.get_data_info(i)['image_id']
                                 for i in range(len(self))})
            self.text_size = len(self)
            return
        infos = [self.get_data_info(i) for i in range(len(self))]
        image_ids = [info['image_id'] for info in infos]
        text_ids = [t for info in infos for t in info['gt_text_id']]
        if image_ids != list(range(len(infos))) or \
                text_ids != list(range(len(text_ids))):
            raise ValueError(
                'A retrieval test set must keep its images in order from the '
                'first (indices=N takes the first N); other subsets break '
                'the image / text numbering the metric relies on.')
        self.img_size, self.text_size = len(image_ids), len(text_ids)


@DATASETS.register_module()
class ImageCaptionDataset(_CaptionFileDataset):
    """Image captioning (COCO Karpathy split, BEiT-3 ``coco_captioning``
    index files, ``{"image", "caption"}`` jsonl lists).

    Training gives one sample per caption (``img_path``, ``text``,
    ``image_id``); ``test_mode=True`` one per image with its reference
    captions as ``gt_caption`` (empty when the file has none, e.g. BEiT-3's
    val/test index: the metric then reads a COCO-format ``ann_file``).

    Args:
        ann_file (str): The annotation file.
        ann_format (str, optional): ``'karpathy'``, ``'beit3'`` or
            ``'jsonl'``; detected when None.
        splits (Sequence[str], optional): Karpathy splits.
        data_root (str): Root of ``ann_file`` and the images.
        data_prefix (dict): ``dict(img_path=...)``.
        test_mode (bool): One sample per image (evaluation).
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def load_data_list(self) -> List[dict]:
        images, empty = load_caption_images(
            self.ann_file, self.ann_format, self.splits,
            self.data_prefix.get('img_path', ''))
        data_list = []
        for image in images:
            if self.test_mode:
                data_list.append(dict(
                    img_path=image['img_path'], image_id=image['image_id'],
                    gt_caption=[c for c in image['captions']
                                if isinstance(c, str)]))
            else:
                data_list += [dict(img_path=image['img_path'],
                                   image_id=image['image_id'], text=caption)
                              for caption in image['captions']]
        self._report_skips(dict(empty_caption=empty), len(data_list),
                           'samples')
        if not data_list:
            raise ValueError(f'{self.ann_file} gives no sample (no captions '
                             'for training?).')
        return data_list


@DATASETS.register_module()
class VQAv2Dataset(_VLDataset):
    """Visual question answering: VQAv2 questions/annotations JSON or the
    official BEiT-3 ``vqa.*.jsonl`` index, with an answer vocabulary
    (``answer2label.txt``; build one with
    :func:`~mmvlp.datasets.vl_formats.build_answer_vocab` or
    ``tools/data/build_vqa_answer_vocab.py``).

    A sample holds ``img_path``, ``question`` (text, or token ids for index
    files), ``question_id`` and, when answers are known: ``gt_answer`` /
    ``gt_answer_weight`` for mmpretrain's ``VQAAcc`` (the annotators'
    answers weighing 0.1 each, which makes its score VQAv2's ``min(1,
    matches / 3)``; for index files the vocabulary answers weighing 0.3 x
    their score) and the training targets ``answer_labels`` /
    ``answer_scores`` (soft scores 0.3 / 0.6 / 0.9 / 1.0 for 1 / 2 / 3 / 4+
    annotators, as the official code). Training drops questions without an
    answer in the vocabulary (counted as ``no_answer_in_vocab``, as the
    official code filters them).

    Args:
        ann_file (str): VQAv2 annotations JSON (with ``question_file``; may
            be ``''`` for test splits) or a BEiT-3 index jsonl.
        answer_file (str): ``answer2label.txt`` (or one answer per line).
        question_file (str, optional): VQAv2 questions JSON; None for index
            files.
        img_template (str): Image name from ``subtype`` and ``image_id``
            (VQAv2 format).
        data_root (str): Root of the files and images.
        data_prefix (dict): ``dict(img_path=...)``, the image folder.
        test_mode (bool): Keep questions without answers in the vocabulary.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 ann_file: str,
                 answer_file: str,
                 question_file: Optional[str] = None,
                 img_template: str = 'COCO_{subtype}_{image_id:012d}.jpg',
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 test_mode: bool = False,
                 **kwargs) -> None:
        self.answer_file = self._join(data_root, answer_file)
        self.question_file = None if question_file is None else self._join(
            data_root, question_file)
        self.img_template = img_template
        self.answers = read_answer_vocab(self.answer_file)
        self.answer_to_label = {a: i for i, a in enumerate(self.answers)}
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=data_prefix, test_mode=test_mode,
                         **kwargs)

    @staticmethod
    def _join(root: str, path: str) -> str:
        import os.path as osp
        return path if not root or osp.isabs(path) else osp.join(root, path)

    def load_data_list(self) -> List[dict]:
        prefix = self.data_prefix.get('img_path', '')
        if self.question_file is not None:
            items = load_vqa(self.question_file, self.ann_file or None,
                             self.img_template, prefix)
            for item in items:
                answers = item.pop('answers', None)
                if answers is None:
                    continue
                counts = Counter(answers)
                known = [a for a in counts if a in self.answer_to_label]
                item.update(
                    gt_answer=answers,
                    gt_answer_weight=[1. / len(answers)] * len(answers),
                    answer_labels=[self.answer_to_label[a] for a in known],
                    answer_scores=[vqa_soft_score(counts[a]) for a in known])
        else:
            items = load_vqa_index(self.ann_file, self.answers, prefix)
            for item in items:
                labels = item.pop('labels')
                scores = item.pop('scores')
                if labels:
                    item.update(
                        gt_answer=[self.answers[i] for i in labels],
                        gt_answer_weight=[0.3 * s for s in scores],
                        answer_labels=labels, answer_scores=scores)
        if not self.test_mode:
            kept = [i for i in items if i.get('answer_labels')]
            self._report_skips(
                dict(no_answer_in_vocab=len(items) - len(kept)), len(kept),
                'questions')
            items = kept
        if not items:
            raise ValueError(f'{self.ann_file or self.question_file} gives no '
                             'question (none with an answer in the '
                             'vocabulary?).')
        return items


@DATASETS.register_module()
class NLVR2Dataset(_VLDataset):
    """NLVR2: is a statement true of a pair of images? Reads NLVR2's json
    lines (``train.json``, ``dev.json``, ``test1.json``) or the official
    BEiT-3 ``nlvr2.*.index.jsonl``.

    A sample holds ``img_path`` (the two images; load them with
    ``ForEachImage``), ``text`` and ``gt_label`` (1 = true).

    Args:
        ann_file (str): The annotation file.
        data_root (str): Root of ``ann_file`` and the images.
        data_prefix (dict): ``dict(img_path=...)``: the image folder of the
            split (``images/train``, ``dev``, ``test1`` in the official
            layout).
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 **kwargs) -> None:
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        items = load_nlvr2(self.ann_file,
                           self.data_prefix.get('img_path', ''))
        for item in items:
            item['gt_label'] = item.pop('label')
        if not items:
            raise ValueError(f'{self.ann_file} holds no example.')
        return items


__all__ = ['ImageTextRetrievalDataset', 'ImageCaptionDataset',
           'VQAv2Dataset', 'NLVR2Dataset']
