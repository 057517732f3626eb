"""Pieces of tools/analysis_tools/eval_demo_pretrain.py."""
import importlib.util
import os.path as osp

import numpy as np

from mmvlp.datasets import make_demo_dataset
from mmvlp.evaluation import NgramBaseline
from mmvlp.text import TextTokenizer, train_sentencepiece

TOOL = osp.join(osp.dirname(__file__), '..', 'tools', 'analysis_tools',
                'eval_demo_pretrain.py')


def _tool():
    spec = importlib.util.spec_from_file_location('eval_demo', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_content_spans_and_foreground(tmp_path):
    tool = _tool()
    make_demo_dataset(str(tmp_path), num_train=60, num_val=4, size=48)
    # As `make demo`: BPE with every caption word a single piece.
    model = train_sentencepiece(str(tmp_path / 'captions_train.jsonl'),
                                str(tmp_path / 'spm'), vocab_size=160,
                                field='caption', model_type='bpe')
    tokenizer = TextTokenizer(model, max_length=48)
    records = tool.load_split(str(tmp_path), 'val')
    for record in records:
        spans = tokenizer.word_positions(record['caption'],
                                         record['content_words'])
        assert spans is not None and len(spans) == len(
            record['content_words'])
        ids = tokenizer.encode(record['caption'])
        for span, word in zip(spans, record['content_words']):
            assert tokenizer.decode([ids[i] for i in span]) == word
        fg = tool.foreground_patches(record['pixels'], record['background'],
                                     8)
        assert fg.shape == (6, 6) and fg.any() and not fg.all()


def test_accuracies_gains_and_check():
    tool = _tool()
    pred, true = np.array([[0, 1, 1, -1]]), np.array([[0, 1, 2, 2]])
    where = np.array([[1, 1, 1, 0]], dtype=bool)
    assert tool.accuracy(pred, true, where) == 2 / 3
    assert tool.majority(true, where) == 1 / 3
    assert tool.accuracy(pred, true, np.zeros_like(where)) == 0.
    metrics = {key: 0.1 for claim in tool.CLAIMS.values()
               for key in (claim[0], ) + claim[1]}
    metrics.update(mim_acc=0.8, mim_visible_majority_baseline=0.75,
                   mim_nearest_visible_baseline=0.7)
    claims = tool.gains(metrics)
    assert set(claims) == set(tool.CLAIMS) > set(tool.THRESHOLDS)
    assert claims['mim']['threshold'] is None  # reported, not asserted
    assert claims['mlm']['threshold'] == tool.THRESHOLDS['mlm']
    mim = claims['mim']
    assert mim['strongest_baseline'] == 'mim_visible_majority_baseline'
    assert np.isclose(mim['gain'], 0.05) and mim['model_acc'] == 0.8
    thresholds = dict.fromkeys(tool.CLAIMS, 0.)
    assert tool.check(claims, thresholds) == []
    failures = tool.check(claims, dict(thresholds, mim=0.06))
    assert len(failures) == 1 and failures[0].startswith(
        'mim: mim_acc 0.800 - mim_visible_majority_baseline 0.750 = +0.050')
    # Claims without a threshold are not checked.
    assert tool.check(claims, dict(mlm=0.)) == []
    # The thresholds of `make test-demo` are the tool's.
    import test_demo_metrics
    assert test_demo_metrics.THRESHOLDS == tool.THRESHOLDS
    assert test_demo_metrics.BASELINES == {
        claim: baselines for claim, (_, baselines) in tool.CLAIMS.items()}


def test_score_on_hand_made_predictions():
    """score() reads every array where it should: masked patches,
    foreground patches, MLM and content masks."""
    tool = _tool()
    targets = np.array([[3, 3, 5, 5]])
    vmask = np.array([[0, 1, 1, 0]], dtype=bool)
    text = np.array([[0, 7, 8, 2]])
    arrays = dict(
        targets=targets, vision_mask=vmask,
        fg=np.array([[0, 0, 1, 1]], dtype=bool),
        mim=np.array([[-1, 3, 3, -1]]),  # right on patch 1 (background)
        text_ids=text, masked_ids=np.array([[0, 9, 8, 2]]),
        mlm_mask=np.array([[0, 1, 0, 0]], dtype=bool),
        mlm=np.array([[-1, 7, -1, -1]]),
        content_mask=np.array([[0, 0, 1, 0]], dtype=bool),
        pair_ids=np.array([[0, 7, 9, 2]]),
        pair_mlm_matched=np.array([[-1, -1, 8, -1]]),
        pair_mlm_shuffled=np.array([[-1, -1, 4, -1]]),
        pair_mlm_text_only=np.array([[-1, -1, 8, -1]]),
        pair_mim_fg_matched=np.array([[-1, -1, 5, -1]]),
        pair_mim_fg_shuffled=np.array([[-1, -1, 3, -1]]))
    ngram = NgramBaseline([[0, 7, 8, 2], [0, 7, 6, 2], [0, 7, 6, 2]], 4)
    m = tool.score(arrays, ngram, (2, 2), mask_id=9)
    assert m['mim_acc'] == 0.5 and m['mim_fg_acc'] == 0.
    # Visible: 3 (patch 0) and 5 (patch 3) tie -> 3; nearest to patch 1
    # (0, 1): patches 0 and 3 at distance 1 -> 3; patch 2 (1, 0): -> 3.
    assert m['mim_visible_majority_baseline'] == 0.5
    assert m['mim_nearest_visible_baseline'] == 0.5
    assert m['mim_fg_nearest_visible_baseline'] == 0.
    # Masked patches hold 3 and 5; the masked foreground patch holds 5.
    assert m['mim_majority_baseline'] == 0.5
    assert m['mim_fg_majority_baseline'] == 1.
    # The visible vote (3) on the masked foreground patch (5) only.
    assert m['mim_fg_visible_majority_baseline'] == 0.
    assert m['mlm_majority_baseline'] == 1.
    assert m['mlm_acc'] == 1. and m['mlm_position_baseline'] == 1.
    assert m['pair_mlm_acc_matched'] == 1. and \
        m['pair_mlm_acc_shuffled'] == 0.
    assert m['pair_mlm_acc_text_only'] == 1.
    # Position 2 is 6 in 2 of 3 training captions; after 7 comes 6, too.
    assert m['pair_mlm_position_baseline'] == 0. and \
        m['pair_mlm_bigram_baseline'] == 0.
    assert m['pair_mim_fg_acc_matched'] == 1.
    assert m['pair_mim_fg_acc_caption_free'] == m['mim_fg_acc']


def test_what_it_learned_picture(tmp_path):
    """The picture of a few scenes from hand-made predictions: a PNG of
    the expected size, and filled-in words coloured by whether they are
    right."""
    from PIL import Image

    from mmvlp.visualization import draw_what_it_learned, token_colours
    from mmvlp.visualization.masked_modeling import (BAD, GOOD,
                                                     _filled_words)
    make_demo_dataset(str(tmp_path), num_train=60, num_val=6, size=48)
    model = train_sentencepiece(str(tmp_path / 'captions_train.jsonl'),
                                str(tmp_path / 'spm'), vocab_size=160,
                                field='caption', model_type='bpe')
    tokenizer = TextTokenizer(model, max_length=32)
    tool = _tool()
    records = tool.load_split(str(tmp_path), 'val')
    rng = np.random.default_rng(0)
    text, _ = tokenizer([r['caption'] for r in records], pad_to=32)
    text = text.numpy()
    content = np.zeros_like(text, dtype=bool)
    for row, record in enumerate(records):
        spans = tokenizer.word_positions(record['caption'],
                                         record['content_words'])
        content[row, spans[0]] = True
    wrong = np.where(content, (text + 1) % 150, -1)
    targets = rng.integers(0, 4, (6, 36))
    arrays = dict(targets=targets,
                  vision_mask=rng.random((6, 36)) < 0.4,
                  mim=targets, content_mask=content,
                  pair_mlm_matched=np.where(content, text, -1),
                  pair_mlm_shuffled=wrong)
    colours = token_colours([r['pixels'] for r in records], targets,
                            [r['background'] for r in records], 8, 5)
    assert colours.shape == (5, 3) and colours[4].tolist() == [128] * 3
    path = draw_what_it_learned(str(tmp_path / 'w.png'), records, arrays,
                                tokenizer, colours, (6, 6), num_scenes=3)
    with Image.open(path) as image:
        # 14 x 2.4 inches per scene at 72 dpi.
        assert image.size == (1008, 518)
    record = records[1]
    first = record['content_words'][0]
    right = _filled_words(tokenizer, record['caption'], content[1],
                          arrays['pair_mlm_matched'][1])
    assert (first, GOOD) in right and not any(c == BAD for _, c in right)
    guessed = _filled_words(tokenizer, record['caption'], content[1],
                            wrong[1])
    assert sum(c == BAD for _, c in guessed) == 1


def test_binary_code_accuracies():
    """BSQ/QLIP ids (big-endian bits): exact, per-bit and majority-bit
    accuracies, and heads with their own ``predict``."""
    import torch
    tool = _tool()
    pred, true = np.array([0b10, 0b11, 0b01]), np.array([0b10, 0b01, 0b11])
    where = np.array([1, 1, 0], dtype=bool)
    assert tool.accuracy(pred, true, where) == 0.5
    assert np.allclose(tool.bit_accuracy(pred, true, where, 2), [0.5, 1.])
    # Ones per bit over [0b10, 0b11, 0b11]: 3/3 and 2/3.
    assert np.isclose(tool.bit_majority(np.array([2, 3, 3]),
                                        np.ones(3, bool), 2), (1 + 2 / 3) / 2)

    class Bits(torch.nn.Module):
        num_bits = 2

        def predict(self, hidden):
            return (hidden > 0).long()[:, 0] * 2 + (hidden > 0).long()[:, 1]

    hidden = torch.tensor([[1., -1.], [-1., 1.]])
    assert tool.visual_predictions(Bits(), hidden).tolist() == [2, 1]
    linear = torch.nn.Linear(2, 3)
    assert torch.equal(tool.visual_predictions(linear, hidden),
                       linear(hidden).argmax(-1))
    # score() adds the bit accuracies when the targets are binary codes.
    arrays = dict(
        targets=np.array([[2, 1, 3, 0]]), vision_mask=np.ones((1, 4), bool),
        fg=np.array([[1, 1, 0, 0]], bool), mim=np.array([[2, 3, 3, 0]]),
        text_ids=np.zeros((1, 3), int), masked_ids=np.zeros((1, 3), int),
        mlm_mask=np.zeros((1, 3), bool), mlm=np.zeros((1, 3), int),
        content_mask=np.zeros((1, 3), bool), pair_ids=np.zeros((1, 3), int),
        pair_mlm_matched=np.zeros((1, 3), int),
        pair_mlm_shuffled=np.zeros((1, 3), int),
        pair_mlm_text_only=np.zeros((1, 3), int),
        pair_mim_fg_matched=np.array([[2, 1, -1, -1]]),
        pair_mim_fg_shuffled=np.array([[0, 0, -1, -1]]), num_bits=2)
    m = tool.score(arrays, NgramBaseline([[0, 1]], 3), (2, 2), mask_id=9)
    assert m['mim_acc'] == 0.75 and m['mim_bit_acc'] == 7 / 8
    assert m['mim_bit_acc_per_dim'] == [0.75, 1.0]
    assert m['mim_fg_bit_acc'] == 0.75
    assert m['pair_mim_fg_bit_acc_matched'] == 1.
    assert m['pair_mim_fg_bit_acc_shuffled'] == 0.5  # 00 vs 10, 00 vs 01


def test_visual_predictions_of_both_heads():
    """A linear head predicts by argmax, a factorised (bit) head by the
    signs of its bit logits, most significant first."""
    import torch

    from mmvlp.models.heads import FactorizedTokenHead, MaskedTokenHead
    tool = _tool()
    torch.manual_seed(0)
    hidden = torch.randn(7, 8)
    linear = MaskedTokenHead(8, 12)
    assert torch.equal(tool.visual_predictions(linear, hidden),
                       linear(hidden).argmax(-1))
    bits = FactorizedTokenHead(8, 5)
    expected = ((bits(hidden) > 0).long() << torch.arange(4, -1, -1)).sum(-1)
    assert torch.equal(tool.visual_predictions(bits, hidden), expected)


def test_compare_demo_targets(tmp_path, capsys):
    import json
    spec = importlib.util.spec_from_file_location(
        'compare', osp.join(osp.dirname(TOOL), 'compare_demo_targets.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    base = dict(mim_acc=0.5, mim_majority_baseline=0.2, mim_fg_acc=0.4,
                mlm_acc=0.6, pair_mlm_acc_matched=0.7,
                pair_mlm_acc_shuffled=0.4, pair_mim_fg_acc_matched=0.5,
                pair_mim_fg_acc_shuffled=0.3)
    bsq = dict(base, mim_bit_acc=0.8, pair_mim_fg_bit_acc_matched=0.9,
               pair_mim_fg_bit_acc_shuffled=0.75)
    paths = []
    for name, metrics in (('vqkd', base), ('bsq', bsq)):
        paths.append(str(tmp_path / f'{name}.json'))
        with open(paths[-1], 'w') as f:
            json.dump(metrics, f)
    out = str(tmp_path / 'cmp.json')
    assert tool.main(paths + ['--out', out]) == 0
    with open(out) as f:
        runs = json.load(f)
    assert np.isclose(runs['vqkd']['caption_fill_gap'], 0.3)
    assert np.isclose(runs['bsq']['fg_fill_bit_gap'], 0.15)
    assert 'fg_fill_bit_gap' not in runs['vqkd']
    assert 'foreground-fill gap (bits)' in capsys.readouterr().out


def test_score_bigram_never_conditions_on_a_mask():
    """Two masked caption tokens in a row: the second one's bigram must not
    read the mask token before it (a training caption that holds the mask
    id, followed by the right word, would otherwise give it away)."""
    tool = _tool()
    arrays = dict(
        targets=np.array([[3, 3, 5, 5]]),
        vision_mask=np.array([[0, 1, 1, 0]], dtype=bool),
        fg=np.array([[0, 0, 1, 1]], dtype=bool),
        mim=np.array([[-1, 3, 3, -1]]),
        text_ids=np.array([[0, 7, 8, 2]]),
        masked_ids=np.array([[0, 9, 9, 2]]),
        mlm_mask=np.array([[0, 1, 1, 0]], dtype=bool),
        mlm=np.array([[-1, 7, 8, -1]]),
        content_mask=np.array([[0, 0, 1, 0]], dtype=bool),
        pair_ids=np.array([[0, 7, 9, 2]]),
        pair_mlm_matched=np.array([[-1, -1, 8, -1]]),
        pair_mlm_shuffled=np.array([[-1, -1, 4, -1]]),
        pair_mlm_text_only=np.array([[-1, -1, 8, -1]]),
        pair_mim_fg_matched=np.array([[-1, -1, 5, -1]]),
        pair_mim_fg_shuffled=np.array([[-1, -1, 3, -1]]))
    # After 0 comes 7; after the mask id 9 comes 8; position 2 is 6 twice.
    ngram = NgramBaseline([[0, 7, 6, 2], [0, 7, 6, 2], [0, 9, 8, 2]], 4)
    m = tool.score(arrays, ngram, (2, 2), mask_id=9)
    # Position 1 (after 0): 7, right; position 2 (after a mask): the
    # position majority 6, wrong (reading the mask would say 8).
    assert m['mlm_bigram_baseline'] == 0.5
    assert m['mlm_position_baseline'] == 0.5
    assert m['mlm_acc'] == 1.
