"""Pieces of tools/analysis_tools/eval_demo_pretrain.py."""
import importlib.util
import os.path as osp

import numpy as np
import torch

from mmvlp.datasets import make_demo_dataset
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


def test_tally_and_check():
    tool = _tool()
    tally = tool.Tally()
    tally.add(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]))
    assert tally.accuracy() == 2 / 3 and tally.majority() == 1 / 3
    # Binary-code ids: bit accuracy per code dimension, most significant
    # first, and the per-bit majority baseline.
    bits = tool.Tally(num_bits=2)
    bits.add(torch.tensor([0b10, 0b11]), torch.tensor([0b10, 0b01]))
    assert bits.accuracy() == 0.5
    assert np.allclose(bits.bit_accuracy_per_dim(), [0.5, 1.0])
    assert bits.bit_majority() == 0.5
    good = dict(mim_acc=0.9, mim_majority_baseline=0.2, mlm_acc=0.5,
                mlm_majority_baseline=0.2, pair_mlm_acc_matched=0.6,
                pair_mlm_acc_shuffled=0.3, pair_mim_fg_acc_matched=0.5,
                pair_mim_fg_acc_shuffled=0.3)
    assert tool.check(good) == []
    bad = dict(good, pair_mim_fg_acc_shuffled=0.45)
    assert len(tool.check(bad)) == 1 and 'pair_mim_fg' in tool.check(bad)[0]
    assert np.isclose(tool.Tally().accuracy(), 0.)


def test_visual_predictions_of_both_heads():
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
    runs = json.load(open(out))
    assert np.isclose(runs['vqkd']['caption_fill_gap'], 0.3)
    assert np.isclose(runs['bsq']['fg_fill_bit_gap'], 0.15)
    assert 'fg_fill_bit_gap' not in runs['vqkd']
    assert 'foreground-fill gap (bits)' in capsys.readouterr().out
