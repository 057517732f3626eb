"""The main demo's claims on its outputs (``make demo``, then
``make test-demo``; CI runs both): on held-out scenes the model beats the
strongest simple baseline of each claim by at least the margin below.

The margins are about half the smallest gain of three seeds of the demo
(``make demo-seeds``; the table is in docs/demo.md: mlm +0.055..+0.072,
caption filling +0.121..+0.167, foreground from the caption
+0.030..+0.076). Image-only MIM (``mim``, ``mim_fg``) is measured but not
claimed: overall the model beats copying the nearest visible patch by only
+0.018..+0.026, and on foreground patches it does not beat it.
"""
import json
import os.path as osp

import pytest

WORK_DIR = osp.join(osp.dirname(__file__), '..', 'work_dirs', 'demo')
METRICS = osp.join(WORK_DIR, 'metrics.json')
PICTURE = osp.join(WORK_DIR, 'what_it_learned.png')

#: Least gain over the strongest baseline per claim (accuracy / 100).
THRESHOLDS = dict(mlm=0.025, caption_filling=0.06, fg_from_caption=0.01)


def _metrics():
    assert osp.isfile(METRICS), 'run `make demo` first'
    with open(METRICS) as f:
        return json.load(f)


@pytest.mark.demo
@pytest.mark.parametrize('claim', sorted(THRESHOLDS))
def test_demo_beats_the_strongest_baseline(claim):
    m = _metrics()
    assert m['num_images'] >= 100
    c = m['claims'][claim]
    assert c['threshold'] == THRESHOLDS[claim]
    # The strongest baseline is the best of all those measured.
    from_metrics = max(m[key] for key in BASELINES[claim])
    assert c['baseline_acc'] == from_metrics
    assert c['model_acc'] - c['baseline_acc'] >= THRESHOLDS[claim], c


@pytest.mark.demo
def test_image_only_claims_are_measured():
    m = _metrics()
    for claim in ('mim', 'mim_fg'):
        c = m['claims'][claim]
        assert c['threshold'] is None
        assert c['baseline_acc'] == max(m[key] for key in BASELINES[claim])


@pytest.mark.demo
def test_demo_drew_what_it_learned():
    from PIL import Image
    assert osp.isfile(PICTURE), 'run `make demo` first'
    assert 30_000 < osp.getsize(PICTURE) < 2_000_000
    with Image.open(PICTURE) as image:
        assert image.format == 'PNG' and image.size[0] >= 800


#: The baselines of each claim (tools/analysis_tools/eval_demo_pretrain.py).
BASELINES = dict(
    mim=('mim_majority_baseline', 'mim_visible_majority_baseline',
         'mim_nearest_visible_baseline'),
    mim_fg=('mim_fg_majority_baseline', 'mim_fg_visible_majority_baseline',
            'mim_fg_nearest_visible_baseline'),
    mlm=('mlm_majority_baseline', 'mlm_position_baseline',
         'mlm_bigram_baseline'),
    caption_filling=('pair_mlm_acc_shuffled', 'pair_mlm_acc_text_only',
                     'pair_mlm_position_baseline',
                     'pair_mlm_bigram_baseline'),
    fg_from_caption=('pair_mim_fg_acc_shuffled',
                     'pair_mim_fg_acc_caption_free'),
)
