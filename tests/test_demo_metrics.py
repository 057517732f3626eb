"""The main demo's thresholds on its outputs (``make demo``, then
``make test-demo``; CI runs both)."""
import json
import os.path as osp

import pytest

METRICS = osp.join(osp.dirname(__file__), '..', 'work_dirs', 'demo',
                   'metrics.json')


@pytest.mark.demo
def test_demo_learned_both_modalities_and_reads_one_for_the_other():
    assert osp.isfile(METRICS), 'run `make demo` first'
    with open(METRICS) as f:
        m = json.load(f)
    assert m['mim_acc'] >= 3 * m['mim_majority_baseline']
    assert m['mlm_acc'] >= 2 * m['mlm_majority_baseline']
    assert m['pair_mlm_acc_matched'] - m['pair_mlm_acc_shuffled'] >= 0.15
    assert m['pair_mim_fg_acc_matched'] - m['pair_mim_fg_acc_shuffled'] >= \
        0.10
    assert m['num_images'] >= 100
