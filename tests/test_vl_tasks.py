"""The four vision-language task models train and evaluate through
tools/train.py and tools/test.py on tiny generated data with the real
metrics, and `make demo-vl` runs end to end on a tiny budget (its CI
smoke)."""
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from helpers.demo_data import make_demo_with_spm
from helpers.transfer import demo_pretrain_checkpoint
from mmpretrain.structures import DataSample

from mmvlp.datasets import make_demo_vl_dataset

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
from vl_demo import path_options, smoke_options  # noqa: E402

CONFIGS = {task: f'configs/demo/beit3-tiny-p8_demo-vl-{task}.py'
           for task in ('retrieval', 'vqa', 'caption', 'nlvr2')}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny demo data (scenes, captions, VQA, NLVR2), a SentencePiece model
    and a checkpoint shaped like the demo pretraining's (random weights)."""
    root = tmp_path_factory.mktemp('vl')
    make_demo_with_spm(root / 'pre', num_train=48, num_val=4)
    data = str(root / 'vl')
    make_demo_vl_dataset(data, num_train=24, num_val=8, size=48,
                         num_nlvr2=(16, 8))
    checkpoint = str(root / 'pretrain.pth')
    demo_pretrain_checkpoint(checkpoint)
    return dict(root=root, data=data, checkpoint=checkpoint,
                text_model=str(root / 'pre' / 'text_spm.model'))


def _run(args, cwd=REPO):
    result = subprocess.run([sys.executable] + args, cwd=cwd, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + \
        result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def demo_smoke(tiny):
    """tools/demo/vl_demo.py (what `make demo-vl` runs) with 2 iterations
    per run: pretrained and scratch runs of retrieval, VQA and captioning
    through tools/train.py."""
    work = str(tiny['root'] / 'demo_vl')
    out = _run(['tools/demo/vl_demo.py', '--pretrained', tiny['checkpoint'],
                '--data-root', tiny['data'], '--text-model',
                tiny['text_model'], '--work-dir', work, '--max-iters', '2',
                '--val-samples', '6'])
    return dict(work=work, out=out)


def test_vl_demo_smoke(demo_smoke):
    """metrics.json with pretrained / scratch per task and the chance
    levels; the pretrained runs load the checkpoint (and the MLM head)."""
    work = demo_smoke['work']
    with open(osp.join(work, 'metrics.json')) as f:
        metrics = json.load(f)
    for name, top in (('retrieval_r1', 100), ('vqa_acc', 100),
                      ('caption_cider', 10)):
        assert set(metrics[name]) == {'pretrained', 'scratch'}
        for value in metrics[name].values():
            assert 0 <= value <= top
        assert 0 <= metrics['_chance'][name] <= top
    assert metrics['_chance']['retrieval_r1'] == pytest.approx(100 / 6)
    assert metrics['_runs']['max_iters'] == 2
    assert 'chance' in demo_smoke['out']
    log = open(osp.join(work, 'caption', 'pretrained',
                        'train_stdout.log')).read()
    assert 'loaded the mlm_head' in log
    scratch = open(osp.join(work, 'caption', 'scratch',
                            'train_stdout.log')).read()
    assert 'Load BEiT3 weights' not in scratch


def _options(task, tiny):
    return path_options(CONFIGS[task], tiny['data'], tiny['text_model']) + \
        smoke_options(1, 6) + [
            f'model.backbone.init_cfg.checkpoint={tiny["checkpoint"]}',
            'train_cfg.max_iters=1', 'train_cfg.val_interval=1',
            'default_hooks.checkpoint.interval=1']


@pytest.fixture(scope='module')
def trained(tiny, demo_smoke):
    """Checkpoints of each task trained through tools/train.py: the demo
    smoke's pretrained runs, and one NLVR2 iteration."""
    checkpoints = {
        task: osp.join(demo_smoke['work'], task, 'pretrained', 'iter_2.pth')
        for task in ('retrieval', 'vqa', 'caption')}
    work = str(tiny['root'] / 'tools_nlvr2')
    _run(['tools/train.py', CONFIGS['nlvr2'], '--work-dir', work,
          '--cfg-options'] + _options('nlvr2', tiny))
    checkpoints['nlvr2'] = osp.join(work, 'iter_1.pth')
    return checkpoints


@pytest.mark.parametrize('task', ['retrieval', 'vqa', 'caption', 'nlvr2'])
def test_train_and_test_tools(task, tiny, trained):
    """tools/test.py on a checkpoint of tools/train.py (the fixture), with
    mmpretrain's RetrievalRecall / VQAAcc / Accuracy and mmvlp's
    CaptionMetric."""
    work = str(tiny['root'] / f'tools_{task}')
    out = _run(['tools/test.py', CONFIGS[task], trained[task], '--work-dir',
                work, '--cfg-options'] + _options(task, tiny))
    keys = {'retrieval': r'i2t/retrieval/Recall@1: [\d.]+ .*'
                         r't2i/retrieval/Recall@1: [\d.]+',
            'vqa': r'VQA/acc: [\d.]+',
            'caption': r'caption/CIDEr: [\d.]+',
            'nlvr2': r'accuracy/top1: [\d.]+'}
    assert re.search(r'Iter\(test\).*' + keys[task], out), out[-2000:]


def _config(task, tiny):
    """The demo config pointed at the tiny data (as the tools get it)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, CONFIGS[task]))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in path_options(
        CONFIGS[task], tiny['data'], tiny['text_model'])))
    return cfg


def _by_hand(cfg, tiny):
    """Image and text inputs prepared here, not by the inferencers: pixels
    read with mmcv, BGR -> RGB and normalised with the config's mean/std;
    texts tokenized by the config's SentencePiece model."""
    import mmcv

    from mmvlp.text import TextTokenizer
    norm = cfg.model.data_preprocessor
    mean = torch.tensor(norm.mean).view(3, 1, 1)
    std = torch.tensor(norm.std).view(3, 1, 1)

    def images(paths):
        return torch.stack([
            (torch.from_numpy(mmcv.imread(p)[..., ::-1].copy()).permute(
                2, 0, 1).float() - mean) / std for p in paths])

    tokenizer = TextTokenizer(tiny['text_model'], style='xlmr',
                              max_length=cfg.max_text_len)

    def texts(strings):
        return tokenizer(list(strings), pad_to=cfg.max_text_len)

    return images, texts


def test_inferencers(tiny, trained, tmp_path):
    """The four inferencers on the trained checkpoints: rankings, scores
    and answers equal a computation from inputs prepared by hand (with
    ``topk`` below the number of candidates); a VQA head built to prefer
    one answer gives that answer and its probability; each saves a
    picture."""
    from mmvlp.apis import (ImageCaptionInferencer,
                            ImageToTextRetrievalInferencer,
                            TextToImageRetrievalInferencer,
                            VisualQuestionAnsweringInferencer)
    folder = osp.join(tiny['data'], 'images', 'val')
    gallery = sorted(osp.join(folder, f) for f in os.listdir(folder))
    images = gallery[:4]
    texts = ['a small red circle at the top left on a grey background',
             'a large blue square at the middle center on a dark background',
             'a green triangle at the bottom right',
             'two shapes on a white background']
    cfg = _config('retrieval', tiny)
    load_images, tokenize = _by_hand(cfg, tiny)

    t2i = TextToImageRetrievalInferencer(cfg, trained['retrieval'],
                                         prototype=folder)
    model = t2i.model
    assert t2i.prototype == gallery and len(gallery) > 3
    with torch.no_grad():
        image_feats = model.encode_image(load_images(gallery))
        text_feats = model.encode_text(*tokenize(texts))
    scores = text_feats @ image_feats.t()  # (texts, gallery images)
    found = t2i(texts[:2], topk=3, show_dir=str(tmp_path / 't2i'))
    assert osp.isfile(tmp_path / 't2i' / '0.png')
    for row, matches in enumerate(found):
        best = scores[row].topk(3)
        assert [m['sample_idx'] for m in matches] == best.indices.tolist()
        assert [m['img_path'] for m in matches] == [
            gallery[i] for i in best.indices]
        assert [m['match_score'] for m in matches] == pytest.approx(
            best.values.tolist(), abs=1e-5)

    i2t = ImageToTextRetrievalInferencer(cfg, trained['retrieval'],
                                         prototype=texts)
    matches = i2t(images[:2], topk=2, show_dir=str(tmp_path / 'i2t'))
    assert osp.isfile(tmp_path / 'i2t' / '1.png')
    for row, found in enumerate(matches):
        best = scores[:, row].topk(2)  # image `row` against the 4 texts
        assert [m['sample_idx'] for m in found] == best.indices.tolist()
        assert [m['text'] for m in found] == [texts[i] for i in best.indices]
        assert [m['match_score'] for m in found] == pytest.approx(
            best.values.tolist(), abs=1e-5)

    vqa_cfg = _config('vqa', tiny)
    vqa = VisualQuestionAnsweringInferencer(vqa_cfg, trained['vqa'])
    question = 'what color is the background'
    ids, padding = tokenize([question])
    sample = DataSample(text_ids=ids[0], text_padding_mask=padding[0])
    with torch.no_grad():
        logits = vqa.model.extract_feat(load_images(images[:1]), [sample])
    answers = vqa(images[0], question, show_dir=str(tmp_path / 'vqa'))
    assert answers[0]['pred_answer'] == \
        vqa.model.answers[int(logits.argmax())]
    assert answers[0]['pred_score'] == pytest.approx(
        float(logits.sigmoid().max()), abs=1e-5)
    assert os.listdir(tmp_path / 'vqa')
    # A classifier that prefers answer k whatever it sees answers k with
    # probability sigmoid(4).
    last = vqa.model.head[3]
    with torch.no_grad():
        last.weight.zero_()
        for k in (1, len(vqa.model.answers) - 1):
            last.bias.fill_(-4.)
            last.bias[k] = 4.
            answer, = vqa(images[1], question)
            assert answer['pred_answer'] == vqa.model.answers[k]
            assert answer['pred_score'] == pytest.approx(1 / (1 + math.exp(
                -4.)), abs=1e-6)

    captioner = ImageCaptionInferencer(_config('caption', tiny),
                                       trained['caption'])
    captions = captioner(images[:2], show_dir=str(tmp_path / 'caption'))
    assert all(isinstance(c['pred_caption'], str) for c in captions)
    import mmcv
    direct = captioner.model.generate(captioner.model.data_preprocessor(
        {'inputs': torch.from_numpy(
            mmcv.imread(images[0])).permute(2, 0, 1)[None]}, False)['images'])
    assert captions[0]['pred_caption'] == \
        captioner.model.tokenizer.decode(direct[0])
    assert len(os.listdir(tmp_path / 'caption')) == 2
