"""Vision-language demo data from the generated shape scenes.

The same scenes as the pretraining demo (:func:`~mmvlp.datasets.demo_data.
make_scene`) with what the fine-tuning tasks need, written in the formats of
the real benchmarks so that the real readers load them:

* captions for retrieval and captioning: a Karpathy-split JSON
  (``dataset_demo_vl.json``, COCO layout) with one caption per image, or two
  for two shapes (both orders);
* questions about colour, shape, count, position and presence, plus the
  background colour: VQAv2 questions / annotations JSON
  (``vqa/questions_<split>.json``, ``vqa/annotations_<split>.json``) and the
  answer vocabulary (``vqa/answer2label.txt``);
* optionally NLVR2-style statements about pairs of scenes (NLVR2 json lines,
  ``nlvr2/<split>.json`` with ``nlvr2/images/<split>/<id>-img{0,1}.png``).

Everything is deterministic for a seed.
"""
import json
import os
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np

from .demo_data import COLORS, SHAPES, caption_of, describe_shape, make_scene
from .vl_formats import build_answer_vocab, write_answer_vocab

POSITIONS = [f'{v} {h}' for v in ('top', 'middle', 'bottom')
             for h in ('left', 'center', 'right')]
COUNT_WORDS = ('zero', 'one', 'two')
QUESTION_TYPES = ('color', 'shape', 'count', 'position', 'exists',
                  'background')


def make_questions(rng: np.random.Generator, words: List[Dict[str, str]],
                   background: str, num: int) -> List[Tuple[str, str, str]]:
    """Up to ``num`` different questions about a scene, with their answers.

    Args:
        rng (np.random.Generator): Source of randomness.
        words (list[dict]): The shapes, described by
            :func:`~mmvlp.datasets.demo_data.describe_shape`.
        background (str): The background colour name.
        num (int): Questions wanted.

    Returns:
        list[tuple]: ``(question, answer, question type)``; the types are
        those of :data:`QUESTION_TYPES` that the scene allows (a colour
        question needs a shape that occurs once, etc.).
    """
    shapes = Counter(w['shape'] for w in words)
    colors = Counter(w['color'] for w in words)
    candidates = []
    for w in words:
        if shapes[w['shape']] == 1:
            candidates.append((f'what color is the {w["shape"]}',
                               w['color'], 'color'))
        if colors[w['color']] == 1:
            candidates.append((f'what shape is {w["color"]}', w['shape'],
                               'shape'))
        candidates.append((f'where is the {w["color"]} {w["shape"]}',
                           f'{w["vertical"]} {w["horizontal"]}', 'position'))
    shape = SHAPES[rng.integers(len(SHAPES))]
    candidates.append((f'how many {shape}s', COUNT_WORDS[shapes[shape]],
                       'count'))
    candidates.append(('how many shapes', COUNT_WORDS[len(words)], 'count'))
    present = {(w['color'], w['shape']) for w in words}
    if rng.random() < 0.5:  # half of the presence questions are true
        color, shape = sorted(present)[rng.integers(len(present))]
    else:
        color = list(COLORS)[rng.integers(len(COLORS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
    candidates.append((f'is there a {color} {shape}',
                       'yes' if (color, shape) in present else 'no',
                       'exists'))
    candidates.append(('what color is the background', background,
                       'background'))
    order = rng.permutation(len(candidates))[:num]
    return [candidates[i] for i in order]


def _nlvr2_statement(rng: np.random.Generator,
                     left: List[Dict[str, str]],
                     right: List[Dict[str, str]]) -> Tuple[str, bool]:
    """A statement about two scenes and whether it is true (about half are
    true: the attributes are drawn from the scenes or at random)."""
    both = left + right
    pick = both[rng.integers(len(both))]
    color = pick['color'] if rng.random() < 0.6 else list(COLORS)[
        rng.integers(len(COLORS))]
    shape = pick['shape'] if rng.random() < 0.6 else SHAPES[
        rng.integers(len(SHAPES))]
    kind = rng.integers(4)
    if kind == 0:
        side, scene = (('left', left), ('right', right))[rng.integers(2)]
        return (f'the {side} image has a {color} {shape}',
                any(w['color'] == color and w['shape'] == shape
                    for w in scene))
    if kind == 1:
        return (f'both images have a {shape}',
                all(any(w['shape'] == shape for w in s)
                    for s in (left, right)))
    if kind == 2:
        return (f'both images have a {color} shape',
                all(any(w['color'] == color for w in s)
                    for s in (left, right)))
    return ('the left image has more shapes', len(left) > len(right))


def make_demo_vl_dataset(out_dir: str,
                         num_train: int = 3000,
                         num_val: int = 300,
                         size: int = 48,
                         seed: int = 0,
                         questions_per_image: int = 2,
                         num_nlvr2: Optional[Tuple[int, int]] = None
                         ) -> Dict[str, int]:
    """Write the vision-language demo data (see the module docstring).

    Layout under ``out_dir``::

        images/{train,val}/00000.png
        dataset_demo_vl.json          Karpathy split (train / val)
        vqa/questions_{train,val}.json, vqa/annotations_{train,val}.json
        vqa/answer2label.txt          answers of the training questions
        nlvr2/{train,val}.json, nlvr2/images/{train,val}/*.png  (optional)

    Args:
        out_dir (str): Output folder.
        num_train (int): Training images.
        num_val (int): Held-out images.
        size (int): Image side in pixels.
        seed (int): Seed; the same seed gives the same data.
        questions_per_image (int): VQA questions per image.
        num_nlvr2 (tuple, optional): ``(train, val)`` NLVR2 examples (pairs
            of new scenes); None writes none.

    Returns:
        dict: Counts of what was written.
    """
    if size < 16:
        raise ValueError(f'size must be at least 16 pixels, got {size}.')
    rng = np.random.default_rng(seed)
    karpathy, counts = [], {}
    vqa: Dict[str, Tuple[list, list]] = {}
    question_id = 0
    for split, count in (('train', num_train), ('val', num_val)):
        folder = osp.join(out_dir, 'images', split)
        os.makedirs(folder, exist_ok=True)
        questions, annotations = [], []
        for index in range(count):
            image, background, shapes = make_scene(rng, size)
            image.save(osp.join(folder, f'{index:05d}.png'))
            words = [describe_shape(item, size) for item in shapes]
            captions = [caption_of(words, background)]
            if len(words) > 1:
                captions.append(caption_of(words[::-1], background))
            image_id = len(karpathy)
            karpathy.append(dict(
                filepath=split, filename=f'{index:05d}.png', split=split,
                imgid=image_id, cocoid=image_id,
                sentences=[dict(raw=c, tokens=c.split(), imgid=image_id)
                           for c in captions]))
            for question, answer, kind in make_questions(
                    rng, words, background, questions_per_image):
                questions.append(dict(image_id=index, question=question,
                                      question_id=question_id))
                annotations.append(dict(
                    image_id=index, question_id=question_id,
                    question_type=kind, answer_type='other',
                    multiple_choice_answer=answer,
                    answers=[dict(answer=answer, answer_confidence='yes',
                                  answer_id=i + 1) for i in range(10)]))
                question_id += 1
        vqa[split] = (questions, annotations)
        counts[f'{split}_images'] = count
        counts[f'{split}_questions'] = len(questions)
    with open(osp.join(out_dir, 'dataset_demo_vl.json'), 'w') as f:
        json.dump(dict(images=karpathy, dataset='demo_vl'), f)
    os.makedirs(osp.join(out_dir, 'vqa'), exist_ok=True)
    for split, (questions, annotations) in vqa.items():
        with open(osp.join(out_dir, 'vqa', f'questions_{split}.json'),
                  'w') as f:
            json.dump(dict(data_subtype=split, questions=questions), f)
        with open(osp.join(out_dir, 'vqa', f'annotations_{split}.json'),
                  'w') as f:
            json.dump(dict(data_subtype=split, annotations=annotations), f)
    answers = build_answer_vocab(vqa['train'][1], min_count=1)
    write_answer_vocab(answers, osp.join(out_dir, 'vqa', 'answer2label.txt'))
    counts['answers'] = len(answers)
    if num_nlvr2:
        for split, count in zip(('train', 'val'), num_nlvr2):
            folder = osp.join(out_dir, 'nlvr2', 'images', split)
            os.makedirs(folder, exist_ok=True)
            with open(osp.join(out_dir, 'nlvr2', f'{split}.json'), 'w') as f:
                for index in range(count):
                    scenes = []
                    for side in range(2):
                        image, _, shapes = make_scene(rng, size)
                        image.save(osp.join(
                            folder, f'{split}-{index}-0-img{side}.png'))
                        scenes.append([describe_shape(s, size)
                                       for s in shapes])
                    # Draw statements until one has the wanted truth
                    # value, so that true and false are balanced.
                    wanted = bool(index % 2)
                    for _ in range(100):
                        sentence, label = _nlvr2_statement(rng, *scenes)
                        if label == wanted:
                            break
                    f.write(json.dumps(dict(
                        identifier=f'{split}-{index}-0-0', sentence=sentence,
                        label=str(label))) + '\n')
            counts[f'nlvr2_{split}'] = count
    return counts


def majority_answer_accuracy(train_ann: str, val_ann: str) -> float:
    """VQA accuracy (%) of always answering the most frequent training
    answer: the chance level of the demo's VQA."""
    with open(train_ann) as f:
        train = json.load(f)['annotations']
    with open(val_ann) as f:
        val = json.load(f)['annotations']
    top = Counter(a['multiple_choice_answer'] for a in train).most_common(1)
    answer = top[0][0]
    return 100. * sum(a['multiple_choice_answer'] == answer
                      for a in val) / len(val)


__all__ = ['make_demo_vl_dataset', 'make_questions',
           'majority_answer_accuracy', 'QUESTION_TYPES', 'POSITIONS']
