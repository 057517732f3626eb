"""Readers of the annotation formats of vision-language benchmarks.

* Karpathy splits of COCO and Flickr30K (``dataset_coco.json``,
  ``dataset_flickr30k.json``): images with ``split`` and ``sentences``;
* the jsonl index files of the official BEiT-3 fine-tuning code
  (``coco_retrieval.*.jsonl``, ``flickr30k.*.jsonl``,
  ``coco_captioning.*.jsonl``, ``vqa.*.jsonl`` + ``answer2label.txt``,
  ``nlvr2.*.index.jsonl``), whose ``text_segment`` holds token ids of
  ``beit3.spm`` in XLM-R numbering (what ``TextTokenizer(style='xlmr')``
  gives);
* VQAv2 questions / annotations JSON and NLVR2's own json lines.

Every reader returns plain dicts; the datasets in
:mod:`mmvlp.datasets.vl_datasets` turn them into samples.
"""
import json
import os.path as osp
from collections import Counter, OrderedDict
from typing import List, Optional, Sequence, Tuple, Union

from mmpretrain.evaluation.metrics.vqa import (_process_digit_article,
                                               _process_punctuation)

KARPATHY_SPLITS = ('train', 'restval', 'val', 'test')


def read_jsonl(path: str) -> List[dict]:
    """Objects of a jsonl file (blank lines ignored), with the line number
    in the error when a line does not parse."""
    items = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as error:
                raise ValueError(f'{path}:{number}: not a JSON object '
                                 f'({error}).') from None
            if not isinstance(item, dict):
                raise ValueError(f'{path}:{number}: expected one JSON object '
                                 f'per line (json lines), got '
                                 f'{type(item).__name__}.')
            items.append(item)
    return items


def _require(item: dict, keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in item]
    if missing:
        raise ValueError(f'{where}: missing field(s) {missing}; found '
                         f'{sorted(item)}.')


def detect_caption_format(ann_file: str) -> str:
    """``'karpathy'`` (a JSON object with ``images``), ``'beit3'`` (jsonl
    with ``image_path``) or ``'jsonl'`` (jsonl with ``image``/``caption``,
    the lists of :class:`~mmvlp.datasets.ImageTextDataset`)."""
    if ann_file.endswith('.json'):
        return 'karpathy'
    if ann_file.endswith('.jsonl'):
        with open(ann_file, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    first = json.loads(line)
                    return 'beit3' if 'image_path' in first else 'jsonl'
        raise ValueError(f'{ann_file} is empty.')
    raise ValueError(f'Cannot tell the format of {ann_file}: expected a '
                     'Karpathy-split .json or a .jsonl index; set ann_format.')


def load_caption_images(ann_file: str,
                        ann_format: Optional[str] = None,
                        splits: Optional[Sequence[str]] = None,
                        img_prefix: str = '') -> Tuple[List[dict], int]:
    """Images with their captions, in file order.

    Args:
        ann_file (str): Karpathy-split JSON, BEiT-3 index jsonl or an
            ``{"image", "caption"}`` jsonl list.
        ann_format (str, optional): ``'karpathy'``, ``'beit3'`` or
            ``'jsonl'``; detected when None.
        splits (Sequence[str], optional): Karpathy splits to keep (e.g.
            ``('train', 'restval')``); required for Karpathy files.
        img_prefix (str): Joined in front of every image path.

    Returns:
        tuple: A list of ``dict(img_path, image_id, captions)`` (captions are
        strings or token-id lists; empty when the file has none, e.g. BEiT-3
        captioning index files of val/test) and the number of empty captions
        that were skipped.
    """
    fmt = ann_format or detect_caption_format(ann_file)
    images: 'OrderedDict[str, dict]' = OrderedDict()
    empty = 0

    def add(path: str, image_id, caption) -> None:
        nonlocal empty
        entry = images.setdefault(path, dict(
            img_path=osp.join(img_prefix, path), image_id=image_id,
            captions=[]))
        if caption is None:
            return
        if isinstance(caption, str) and not caption.strip():
            empty += 1
            return
        if isinstance(caption, list) and not caption:
            empty += 1
            return
        entry['captions'].append(
            caption.strip() if isinstance(caption, str) else caption)

    if fmt == 'karpathy':
        if not splits:
            raise ValueError('A Karpathy-split file needs splits, e.g. '
                             "('train', 'restval') or ('test',).")
        unknown = set(splits) - set(KARPATHY_SPLITS)
        if unknown:
            raise ValueError(f'Unknown Karpathy splits {sorted(unknown)}; '
                             f'choose from {KARPATHY_SPLITS}.')
        with open(ann_file, encoding='utf-8') as f:
            data = json.load(f)
        if 'images' not in data:
            raise ValueError(f'{ann_file} has no "images" list; expected a '
                             'Karpathy split (dataset_coco.json, '
                             'dataset_flickr30k.json).')
        for index, item in enumerate(data['images']):
            _require(item, ('filename', 'split', 'sentences'),
                     f'{ann_file} image {index}')
            if item['split'] not in splits:
                continue
            path = osp.join(item.get('filepath', ''), item['filename'])
            image_id = item.get('cocoid', item.get('imgid', index))
            if not item['sentences']:
                add(path, image_id, None)
            for sentence in item['sentences']:
                add(path, image_id, sentence.get('raw'))
    elif fmt == 'beit3':
        for number, item in enumerate(read_jsonl(ann_file), 1):
            _require(item, ('image_path', 'image_id'),
                     f'{ann_file}:{number}')
            add(item['image_path'], item['image_id'],
                item.get('text_segment'))
    elif fmt == 'jsonl':
        for number, item in enumerate(read_jsonl(ann_file), 1):
            _require(item, ('image', 'caption'), f'{ann_file}:{number}')
            path = item['image']
            add(path, item.get('image_id', path), item['caption'])
    else:
        raise ValueError(f'Unknown caption format {fmt!r}; use karpathy, '
                         'beit3 or jsonl.')
    return list(images.values()), empty


# --------------------------------------------------------------------------
# VQA
# --------------------------------------------------------------------------
def normalize_answer(answer: str) -> str:
    """VQAv2's answer normalisation (punctuation, digits, articles), the one
    mmpretrain's ``VQAAcc`` applies before comparing answers."""
    answer = answer.replace('\n', ' ').replace('\t', ' ').strip()
    return _process_digit_article(_process_punctuation(answer))


def vqa_soft_score(count: int) -> float:
    """Training target of an answer given by ``count`` of the 10
    annotators, as in the official BEiT-3 code (0, 0.3, 0.6, 0.9, 1.0 for
    0-4+ annotators): a smoothed ``min(1, count / 3)``."""
    return (0., .3, .6, .9)[count] if count < 4 else 1.


def build_answer_vocab(annotations: Sequence[dict],
                       min_count: int = 9,
                       max_answers: Optional[int] = None) -> List[str]:
    """Answer vocabulary: the most frequent ``multiple_choice_answer`` s.

    The official BEiT-3 vocabulary (3129 answers on VQAv2 train + val)
    keeps the normalised answers that occur at least 9 times.

    Args:
        annotations (Sequence[dict]): VQAv2 annotations (the
            ``annotations`` lists of the train/val files).
        min_count (int): Keep answers occurring at least this often.
        max_answers (int, optional): Keep at most this many (most frequent
            first).

    Returns:
        list[str]: Answers, most frequent first (ties in first-seen order).
    """
    counts = Counter(
        normalize_answer(a['multiple_choice_answer']) for a in annotations)
    ranked = [a for a, c in counts.most_common() if c >= min_count]
    return ranked[:max_answers] if max_answers else ranked


def write_answer_vocab(answers: Sequence[str], path: str) -> None:
    """Write the official ``answer2label.txt`` (one
    ``{"answer": ..., "label": i}`` per line)."""
    with open(path, 'w', encoding='utf-8') as f:
        for label, answer in enumerate(answers):
            f.write(json.dumps(dict(answer=answer, label=label)) + '\n')


def read_answer_vocab(path: str) -> List[str]:
    """Answers of an ``answer2label.txt`` (jsonl) or a plain list (one
    answer per line, or a JSON list), indexed by label."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    stripped = text.strip()
    if stripped.startswith('['):
        return [str(a) for a in json.loads(stripped)]
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].lstrip().startswith('{'):
        answers = []
        for number, line in enumerate(lines):
            item = json.loads(line)
            if int(item['label']) != number:
                raise ValueError(f'{path}: label {item["label"]} on line '
                                 f'{number + 1}; labels must be 0, 1, 2, '
                                 '... in order.')
            answers.append(item['answer'])
        return answers
    return [line.strip() for line in lines]


def load_vqa(question_file: str,
             ann_file: Optional[str] = None,
             img_template: str = 'COCO_{subtype}_{image_id:012d}.jpg',
             img_prefix: str = '') -> List[dict]:
    """Questions of VQAv2's JSON files, with their answers when given.

    Args:
        question_file (str): ``v2_OpenEnded_mscoco_*_questions.json``.
        ann_file (str, optional): ``v2_mscoco_*_annotations.json`` (none for
            test splits).
        img_template (str): Image file name from ``subtype`` (the
            questions' ``data_subtype``, e.g. ``train2014``) and
            ``image_id``.
        img_prefix (str): Folder joined in front.

    Returns:
        list[dict]: ``img_path``, ``question``, ``question_id``,
        ``image_id`` and, with annotations, ``answers`` (the annotators'
        answers, normalised).
    """
    with open(question_file, encoding='utf-8') as f:
        data = json.load(f)
    if 'questions' not in data:
        raise ValueError(f'{question_file} has no "questions" list; expected '
                         'a VQAv2 questions file.')
    subtype = data.get('data_subtype', '')
    answers = {}
    if ann_file is not None:
        with open(ann_file, encoding='utf-8') as f:
            annotations = json.load(f)
        if 'annotations' not in annotations:
            raise ValueError(f'{ann_file} has no "annotations" list; '
                             'expected a VQAv2 annotations file.')
        for ann in annotations['annotations']:
            answers[ann['question_id']] = [
                normalize_answer(a['answer']) for a in ann['answers']]
    items = []
    for index, q in enumerate(data['questions']):
        _require(q, ('image_id', 'question', 'question_id'),
                 f'{question_file} question {index}')
        item = dict(
            img_path=osp.join(img_prefix, img_template.format(
                subtype=subtype, image_id=q['image_id'])),
            question=q['question'], question_id=q['question_id'],
            image_id=q['image_id'])
        if ann_file is not None:
            if q['question_id'] not in answers:
                raise ValueError(f'Question {q["question_id"]} has no '
                                 f'annotation in {ann_file}.')
            item['answers'] = answers[q['question_id']]
        items.append(item)
    return items


def load_vqa_index(index_file: str, answers: Sequence[str],
                   img_prefix: str = '') -> List[dict]:
    """Questions of an official BEiT-3 ``vqa.*.jsonl`` index (``labels`` /
    ``scores`` over ``answer2label.txt``; empty for test splits)."""
    items = []
    for number, item in enumerate(read_jsonl(index_file), 1):
        _require(item, ('image_path', 'text_segment', 'qid'),
                 f'{index_file}:{number}')
        labels = item.get('labels') or []
        scores = item.get('scores') or []
        if len(labels) != len(scores):
            raise ValueError(f'{index_file}:{number}: labels and scores '
                             'differ in length.')
        if any(not 0 <= int(label) < len(answers) for label in labels):
            raise ValueError(f'{index_file}:{number}: a label is outside '
                             f'the {len(answers)} answers of the vocabulary.')
        items.append(dict(
            img_path=osp.join(img_prefix, item['image_path']),
            question=item['text_segment'], question_id=item['qid'],
            labels=[int(x) for x in labels],
            scores=[float(x) for x in scores]))
    return items


# --------------------------------------------------------------------------
# NLVR2
# --------------------------------------------------------------------------
def _nlvr2_label(value: Union[str, bool, int], where: str) -> int:
    if isinstance(value, str):
        if value.lower() not in ('true', 'false'):
            raise ValueError(f'{where}: label must be "True" or "False", got '
                             f'{value!r}.')
        return int(value.lower() == 'true')
    return int(bool(value))


def load_nlvr2(ann_file: str, img_prefix: str = '') -> List[dict]:
    """NLVR2 examples from NLVR2's json lines (``identifier``, ``sentence``,
    ``label``, ``directory`` for train) or an official BEiT-3 index
    (``image_path``, ``image2_path``, ``text_segment``, ``label``).

    NLVR2's images are ``<prefix>/[<directory>/]<identifier without its last
    part>-img0.png`` and ``-img1.png``, as the official code names them.

    Returns:
        list[dict]: ``img_path`` (the two paths), ``text`` and ``label``
        (1 = true) and ``identifier``.
    """
    items = []
    for number, item in enumerate(read_jsonl(ann_file), 1):
        where = f'{ann_file}:{number}'
        if 'image_path' in item:
            _require(item, ('image2_path', 'text_segment', 'label'), where)
            paths = [item['image_path'], item['image2_path']]
            text = item['text_segment']
        else:
            _require(item, ('identifier', 'sentence', 'label'), where)
            stem = '-'.join(item['identifier'].split('-')[:-1])
            folder = str(item['directory']) if 'directory' in item else ''
            paths = [osp.join(folder, f'{stem}-img{i}.png') for i in (0, 1)]
            text = item['sentence']
        items.append(dict(
            img_path=[osp.join(img_prefix, p) for p in paths], text=text,
            label=_nlvr2_label(item['label'], where),
            identifier=item.get('identifier', str(number))))
    return items


__all__ = [
    'read_jsonl', 'detect_caption_format', 'load_caption_images',
    'normalize_answer', 'vqa_soft_score', 'build_answer_vocab',
    'write_answer_vocab', 'read_answer_vocab', 'load_vqa', 'load_vqa_index',
    'load_nlvr2', 'KARPATHY_SPLITS'
]
