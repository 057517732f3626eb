"""Readers of the vision-language formats, the demo VL data, the text and
multi-image transforms and the caption metric, on small files in the
benchmarks' schemas."""
import json
import os.path as osp
from collections import Counter

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from PIL import Image

from mmvlp.datasets import (ImageCaptionDataset, ImageTextRetrievalDataset,
                            NLVR2Dataset, VQAv2Dataset, make_demo_vl_dataset)
from mmvlp.datasets.skips import skip_counter
from mmvlp.datasets.vl_formats import (build_answer_vocab, normalize_answer,
                                       read_answer_vocab, vqa_soft_score,
                                       write_answer_vocab)
from mmvlp.evaluation import CaptionMetric, caption_scores
from mmvlp.evaluation import caption as caption_module
from mmvlp.registry import TRANSFORMS
from mmvlp.text import TextTokenizer, train_sentencepiece


def _write(path, obj, lines: bool = False) -> str:
    path = str(path)
    with open(path, 'w') as f:
        if lines or path.endswith('.jsonl') or path.endswith('.txt'):
            f.write(''.join(json.dumps(o) + '\n' for o in obj))
        else:
            json.dump(obj, f)
    return path


def _karpathy(tmp_path):
    images = []
    for index, split in enumerate(['train', 'restval', 'val', 'test', 'val']):
        sentences = [dict(raw=f'caption {index} {k}') for k in range(2)]
        if index == 4:
            sentences = [dict(raw='  ')]  # only an empty caption
        images.append(dict(filepath=f'{split}2014', filename=f'{index}.jpg',
                           split=split, cocoid=100 + index,
                           sentences=sentences))
    return _write(tmp_path / 'dataset_coco.json', dict(images=images))


def test_retrieval_dataset_karpathy(tmp_path):
    ann = _karpathy(tmp_path)
    train = ImageTextRetrievalDataset(ann, splits=['train', 'restval'],
                                      data_root=str(tmp_path))
    assert len(train) == 4
    assert train[0]['img_path'] == osp.join(str(tmp_path), 'train2014/0.jpg')
    assert [train[i]['image_id'] for i in range(4)] == [0, 0, 1, 1]
    assert train.img_size == 2 and train.text_size == 4
    test = ImageTextRetrievalDataset(ann, splits=['val'], test_mode=True,
                                     data_root=str(tmp_path))
    # The second val image has only an empty caption: skipped and counted.
    assert len(test) == 1 and test.load_skips == {'empty_caption': 2}
    sample = test[0]
    assert sample['text'] == ['caption 2 0', 'caption 2 1']
    assert sample['gt_text_id'] == [0, 1] and sample['gt_image_id'] == [0, 0]
    assert (test.img_size, test.text_size) == (1, 2)
    with pytest.raises(ValueError, match='needs splits'):
        ImageTextRetrievalDataset(ann)
    with pytest.raises(ValueError, match='Unknown Karpathy splits'):
        ImageTextRetrievalDataset(ann, splits=['dev'])


def test_retrieval_dataset_beit3_index_and_flickr(tmp_path):
    """The official index files hold token ids (text_segment); Flickr30K's
    Karpathy file has no folder per image (data_prefix gives it)."""
    index = _write(tmp_path / 'coco_retrieval.test.jsonl', [
        dict(image_path='val2014/a.jpg', text_segment=[10, 11], image_id=0),
        dict(image_path='val2014/a.jpg', text_segment=[12], image_id=0),
        dict(image_path='val2014/b.jpg', text_segment=[13, 14], image_id=1)])
    test = ImageTextRetrievalDataset(index, test_mode=True)
    assert len(test) == 2 and test.text_size == 3
    assert test[0]['text'] == [[10, 11], [12]]
    # indices=N keeps the numbering of the first N images.
    first = ImageTextRetrievalDataset(index, test_mode=True, indices=1)
    assert (first.img_size, first.text_size) == (1, 2)
    flickr = _write(tmp_path / 'dataset_flickr30k.json', dict(images=[
        dict(filename='1.jpg', split='train', imgid=0,
             sentences=[dict(raw='a dog')])]))
    train = ImageTextRetrievalDataset(
        flickr, splits=['train'],
        data_prefix=dict(img_path='flickr30k-images'))
    assert train[0]['img_path'] == 'flickr30k-images/1.jpg'
    bad = _write(tmp_path / 'bad.jsonl', [dict(image_path='x.jpg')])
    with pytest.raises(ValueError, match='missing field'):
        ImageTextRetrievalDataset(bad)


def test_caption_dataset(tmp_path):
    ann = _karpathy(tmp_path)
    train = ImageCaptionDataset(ann, splits=['train'])
    assert [s['text'] for s in train] == ['caption 0 0', 'caption 0 1']
    test = ImageCaptionDataset(ann, splits=['test'], test_mode=True)
    assert test[0]['gt_caption'] == ['caption 3 0', 'caption 3 1']
    assert test[0]['image_id'] == 103
    # BEiT-3's captioning index of val/test has no captions.
    index = _write(tmp_path / 'coco_captioning.test.jsonl', [
        dict(image_path='val2014/a.jpg', text_segment=None, image_id=7)])
    test = ImageCaptionDataset(index, test_mode=True)
    assert test[0]['gt_caption'] == [] and test[0]['image_id'] == 7
    with pytest.raises(ValueError, match='no sample'):
        ImageCaptionDataset(index)


def test_vqa_answers_scores_and_vocabulary(tmp_path):
    questions = dict(data_subtype='val2014', questions=[
        dict(image_id=1, question='What color?', question_id=10),
        dict(image_id=1, question='How many?', question_id=11),
        dict(image_id=2, question='Why?', question_id=12)])
    answers = [['Red'] * 7 + ['red.'] + ['blue'] * 2,
               ['two'] * 3 + ['2'] + ['three'] * 6,
               ['because'] * 10]
    annotations = dict(annotations=[
        dict(image_id=q['image_id'], question_id=q['question_id'],
             multiple_choice_answer=a[0],
             answers=[dict(answer=x, answer_id=i + 1)
                      for i, x in enumerate(a)])
        for q, a in zip(questions['questions'], answers)])
    qfile = _write(tmp_path / 'q.json', questions)
    afile = _write(tmp_path / 'a.json', annotations)
    # The vocabulary: normalised most frequent answers ('two' -> '2').
    vocab = build_answer_vocab(annotations['annotations'], min_count=1)
    assert vocab == ['red', '2', 'because']
    assert build_answer_vocab(annotations['annotations'] * 9,
                              max_answers=2) == ['red', '2']
    write_answer_vocab(vocab[:2], str(tmp_path / 'answer2label.txt'))
    assert read_answer_vocab(str(tmp_path / 'answer2label.txt')) == \
        vocab[:2]
    train = VQAv2Dataset(afile, answer_file='answer2label.txt',
                         question_file='q.json', data_root=str(tmp_path))
    # 'Why?' has no answer in the vocabulary: dropped in training.
    assert len(train) == 2
    assert train.load_skips == {'no_answer_in_vocab': 1}
    first = train[0]
    assert first['img_path'].endswith('COCO_val2014_000000000001.jpg')
    assert first['answer_labels'] == [0]  # 'red' 8x; 'blue' not in vocab
    assert first['answer_scores'] == [1.0]
    second = train[1]
    assert second['answer_labels'] == [1] and second['answer_scores'] == [1.]
    assert [vqa_soft_score(c) for c in range(6)] == [0, .3, .6, .9, 1, 1]
    test = VQAv2Dataset(afile, answer_file=str(tmp_path / 'answer2label.txt'),
                        question_file=qfile, test_mode=True)
    assert len(test) == 3
    # mmpretrain's VQAAcc on these weights is VQAv2's min(1, matches / 3).
    from mmpretrain.evaluation import VQAAcc
    metric = VQAAcc()
    metric.process(None, [dict(test[1], pred_answer='three'),
                          dict(test[1], pred_answer='2'),
                          dict(test[0], pred_answer='blue')])
    scores = [r for r in metric.results]
    accs = [min(1., sum(w for g, w in zip(r['gt_answer'],
                                          r['gt_answer_weight'])
                        if normalize_answer(g) == normalize_answer(
                            r['pred_answer'])) / 0.3) for r in scores]
    assert accs == pytest.approx([1., 1., 2 / 3])
    assert metric.compute_metrics(metric.results)['acc'] == \
        pytest.approx(100 * (1 + 1 + 2 / 3) / 3)


def test_vqa_beit3_index(tmp_path):
    _write(tmp_path / 'answer2label.txt',
           [dict(answer='yes', label=0), dict(answer='no', label=1)])
    index = _write(tmp_path / 'vqa.train.jsonl', [
        dict(image_path='train2014/x.jpg', text_segment=[5, 6],
             labels=[0, 1], scores=[1.0, 0.3], qid=3),
        dict(image_path='train2014/y.jpg', text_segment=[5], labels=[],
             scores=[], qid=4)])
    train = VQAv2Dataset(index, answer_file='answer2label.txt',
                         data_root=str(tmp_path))
    assert len(train) == 1
    sample = train[0]
    assert sample['question'] == [5, 6]
    assert sample['answer_labels'] == [0, 1]
    assert sample['gt_answer'] == ['yes', 'no']
    assert sample['gt_answer_weight'] == pytest.approx([0.3, 0.09])
    bad = _write(tmp_path / 'bad.jsonl', [
        dict(image_path='x.jpg', text_segment=[5], labels=[7], scores=[1.],
             qid=1)])
    with pytest.raises(ValueError, match='outside'):
        VQAv2Dataset(bad, answer_file=str(tmp_path / 'answer2label.txt'))


def test_nlvr2_formats(tmp_path):
    raw = _write(tmp_path / 'train.json', [
        dict(identifier='train-10-1-0', sentence='Two dogs.', label='True',
             directory=3),
        dict(identifier='train-11-0-2', sentence='No cat.', label='False',
             directory=4)], lines=True)
    data = NLVR2Dataset(raw, data_prefix=dict(img_path='images/train'))
    assert data[0]['img_path'] == ['images/train/3/train-10-1-img0.png',
                                   'images/train/3/train-10-1-img1.png']
    assert [d['gt_label'] for d in data] == [1, 0]
    index = _write(tmp_path / 'nlvr2.dev.index.jsonl', [
        dict(image_path='dev/a-img0.png', image2_path='dev/a-img1.png',
             text_segment=[4, 5], label=1, identifier='dev-0-0-0')])
    assert NLVR2Dataset(index)[0]['text'] == [4, 5]
    bad = _write(tmp_path / 'bad.json', [
        dict(identifier='x-1-0-0', sentence='s', label='maybe')], lines=True)
    with pytest.raises(ValueError, match='"True" or "False"'):
        NLVR2Dataset(bad)
    with pytest.raises(ValueError, match='one JSON object per line'):
        NLVR2Dataset(_write(tmp_path / 'array.json', [[1, 2]]))


@pytest.fixture(scope='module')
def spm(tmp_path_factory):
    root = tmp_path_factory.mktemp('spm')
    corpus = root / 'corpus.txt'
    corpus.write_text('a red circle at the top left\na blue square\n' * 5)
    train_sentencepiece(str(corpus), str(root / 'spm'), vocab_size=30)
    return str(root / 'spm.model')


def test_tokenize_text_lists_and_ids(spm):
    tokenize = TRANSFORMS.build(dict(type='TokenizeText', model_file=spm,
                                     max_length=8, key='text'))
    tokenizer = TextTokenizer(spm, max_length=8)
    one = tokenize(dict(text='a red circle'))
    ids = tokenizer.encode('a red circle')
    assert one['text_ids'][:len(ids)].tolist() == ids
    assert one['text_padding_mask'].sum() == 8 - len(ids)
    many = tokenize(dict(text=['a red circle', 'a blue square']))
    assert many['text_ids'].shape == (2, 8)
    assert torch.equal(many['text_ids'][0], one['text_ids'])
    pieces = tokenize(dict(text=[7, 8, 9, 10, 11, 12, 13]))  # truncated
    assert pieces['text_ids'].tolist() == [0, 7, 8, 9, 10, 11, 12, 2]
    with pytest.raises(ValueError, match='must be a text'):
        tokenize(dict(text=None))


def test_for_each_image_skips_bad_pairs(tmp_path):
    good = str(tmp_path / 'good.png')
    Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).save(good)
    pipeline = Compose([
        TRANSFORMS.build(dict(type='ForEachImage', transforms=[
            dict(type='LoadImageSafe'),
            dict(type='mmpretrain.Resize', scale=(8, 8))])),
        TRANSFORMS.build(dict(type='PackVLInputs', algorithm_keys=['text'])),
    ])
    skip_counter().pop()
    out = pipeline(dict(img_path=[good, good], text='t'))
    assert [tuple(i.shape) for i in out['inputs']] == [(3, 8, 8)] * 2
    assert out['data_samples'].text == 't'
    assert pipeline(dict(img_path=[good, str(tmp_path / 'missing.png')]),
                    ) is None
    packed = pipeline(dict(img_path=[good, good], text='t'))
    assert packed['skipped'].sum() == 1  # the missing file, counted


def test_demo_vl_data(tmp_path):
    counts = make_demo_vl_dataset(str(tmp_path / 'a'), num_train=30,
                                  num_val=10, size=32, num_nlvr2=(20, 6))
    assert counts['train_questions'] == 60
    again = make_demo_vl_dataset(str(tmp_path / 'b'), num_train=30,
                                 num_val=10, size=32, num_nlvr2=(20, 6))
    assert counts == again
    for name in ('dataset_demo_vl.json', 'vqa/questions_train.json',
                 'vqa/annotations_val.json', 'nlvr2/train.json'):
        with open(tmp_path / 'a' / name) as f, \
                open(tmp_path / 'b' / name) as g:
            assert f.read() == g.read(), name
    root = str(tmp_path / 'a')
    retrieval = ImageTextRetrievalDataset(
        'dataset_demo_vl.json', splits=['val'], test_mode=True,
        data_root=root, data_prefix=dict(img_path='images'))
    assert retrieval.img_size == 10
    assert osp.isfile(retrieval[0]['img_path'])
    vqa = VQAv2Dataset('vqa/annotations_train.json',
                       answer_file='vqa/answer2label.txt',
                       question_file='vqa/questions_train.json',
                       img_template='{subtype}/{image_id:05d}.png',
                       data_root=root, data_prefix=dict(img_path='images'))
    assert len(vqa) == 60 and osp.isfile(vqa[0]['img_path'])
    kinds = {q['question'].split()[0] for q in vqa}
    assert kinds <= {'what', 'where', 'how', 'is'} and len(kinds) >= 3
    # The answers agree with the captions of the same scenes.
    with open(osp.join(root, 'dataset_demo_vl.json')) as f:
        captions = {im['imgid']: im['sentences'][0]['raw']
                    for im in json.load(f)['images'] if im['split'] ==
                    'train'}
    for sample in vqa:
        caption = captions[sample['image_id']]
        answer = sample['gt_answer'][0]
        if sample['question'].startswith('where is the'):
            color, shape = sample['question'].split()[-2:]
            assert f'{color} {shape} at the {answer}' in caption
        if sample['question'] == 'what color is the background':
            assert caption.endswith(f'on a {answer} background')
    nlvr2 = NLVR2Dataset('nlvr2/train.json', data_root=root,
                         data_prefix=dict(img_path='nlvr2/images/train'))
    assert Counter(s['gt_label'] for s in nlvr2) == {0: 10, 1: 10}
    assert all(osp.isfile(p) for s in nlvr2 for p in s['img_path'])


def test_caption_metric_matches_coco_eval_cap(tmp_path, monkeypatch):
    """CaptionMetric gives pycocoevalcap's COCOEvalCap numbers (SPICE,
    which needs a download, left out), from sample references or a
    COCO-format file."""
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO
    refs = {1: ['A red circle at the top left.', 'a small red circle'],
            2: ['a blue square at the bottom', 'the blue square'],
            3: ['a green triangle on a grey background']}
    preds = {1: 'a red circle at the top', 2: 'a blue square',
             3: 'a grey triangle'}
    gt = _write(tmp_path / 'gt.json', dict(
        images=[dict(id=i) for i in refs], type='captions', info={},
        licenses=[], annotations=[
            dict(image_id=i, id=10 * i + k, caption=c)
            for i, cs in refs.items() for k, c in enumerate(cs)]))
    res = _write(tmp_path / 'res.json', [dict(image_id=i, caption=c)
                                         for i, c in preds.items()])

    class NoSpice:
        def compute_score(self, gts, res):
            return 0., [0.] * len(res)

        def method(self):
            return 'SPICE'

    monkeypatch.setattr(coco_eval, 'Spice', NoSpice)
    monkeypatch.setattr(coco_eval, 'Meteor', NoSpice)  # (slow to start)
    coco = COCO(gt)
    evaluator = coco_eval.COCOEvalCap(coco, coco.loadRes(res))
    evaluator.evaluate()
    expected = evaluator.eval
    metric = CaptionMetric()
    metric.process(None, [dict(image_id=i, pred_caption=c,
                               gt_caption=refs[i]) for i, c in preds.items()])
    ours = metric.compute_metrics(metric.results)
    for key in ('Bleu_1', 'Bleu_4', 'ROUGE_L', 'CIDEr'):
        assert ours[key] == pytest.approx(expected[key], abs=1e-9), key
    from_file = CaptionMetric(ann_file=gt)
    from_file.process(None, [dict(image_id=i, pred_caption=c)
                             for i, c in preds.items()])
    assert from_file.compute_metrics(from_file.results) == ours
    # Without java the Python tokenizer gives the same scores on these.
    monkeypatch.setattr(caption_module, 'java_available', lambda: False)
    simple = caption_scores(refs, preds)
    for key in ('Bleu_4', 'CIDEr'):
        assert simple[key] == pytest.approx(ours[key], abs=1e-9), key
    with pytest.raises(ValueError, match='no reference'):
        caption_scores({}, preds, tokenizer='simple')


@pytest.mark.skipif(not caption_module.java_available(),
                    reason='METEOR needs Java: without it METEOR is '
                    'unavailable and this comparison does not run '
                    '(docs/vision_language.md)')
def test_caption_metric_meteor_matches_coco_eval_cap(tmp_path, monkeypatch):
    """With Java on the PATH, CaptionMetric(meteor=True) gives
    pycocoevalcap's COCOEvalCap METEOR (its bundled METEOR 1.5 jar, PTB
    tokenization; SPICE left out)."""
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO
    refs = {1: ['A red circle at the top left.', 'a small red circle'],
            2: ['a blue square at the bottom', 'the blue square'],
            3: ['a green triangle on a grey background']}
    preds = {1: 'a red circle at the top', 2: 'blue squares',
             3: 'a grey triangle'}
    gt = _write(tmp_path / 'gt.json', dict(
        images=[dict(id=i) for i in refs], type='captions', info={},
        licenses=[], annotations=[
            dict(image_id=i, id=10 * i + k, caption=c)
            for i, cs in refs.items() for k, c in enumerate(cs)]))
    res = _write(tmp_path / 'res.json', [dict(image_id=i, caption=c)
                                         for i, c in preds.items()])

    class NoSpice:
        def compute_score(self, gts, res):
            return 0., [0.] * len(res)

        def method(self):
            return 'SPICE'

    monkeypatch.setattr(coco_eval, 'Spice', NoSpice)
    # One METEOR process (a 2 GB JVM, seconds to start) serves both.
    from pycocoevalcap.meteor import meteor as meteor_module
    scorer = meteor_module.Meteor()
    monkeypatch.setattr(coco_eval, 'Meteor', lambda: scorer)
    monkeypatch.setattr(meteor_module, 'Meteor', lambda: scorer)
    coco = COCO(gt)
    evaluator = coco_eval.COCOEvalCap(coco, coco.loadRes(res))
    evaluator.evaluate()
    expected = evaluator.eval['METEOR']
    metric = CaptionMetric(meteor=True)
    metric.process(None, [dict(image_id=i, pred_caption=c,
                               gt_caption=refs[i]) for i, c in preds.items()])
    ours = metric.compute_metrics(metric.results)['METEOR']
    assert 0.1 < expected < 0.9  # a case with partial matches
    assert ours == pytest.approx(expected, abs=1e-9)
