"""tools/demo/pretrain_demo.py (make demo) and tools/demo/demo_seeds.py
(make demo-seeds) without training: the data cache key, the timing record,
and the multi-seed summary."""
import json
import os.path as osp
import sys

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
import demo_seeds  # noqa: E402
import pretrain_demo  # noqa: E402


def test_generated_data_is_reused_only_when_current(tmp_path, monkeypatch):
    data = tmp_path / 'data'
    data.mkdir()
    assert not pretrain_demo.data_is_current(str(data))
    (data / 'text_spm.model').write_text('')
    (data / 'demo_stamp.json').write_text(json.dumps(
        pretrain_demo.data_stamp()))
    assert pretrain_demo.data_is_current(str(data))
    # Another size, or a change to the generator's code: made again.
    monkeypatch.setattr(pretrain_demo, 'DATA_ARGS',
                        dict(pretrain_demo.DATA_ARGS, size=64))
    assert not pretrain_demo.data_is_current(str(data))
    monkeypatch.undo()
    stamp = pretrain_demo.data_stamp()
    stamp['sources']['mmvlp/datasets/demo_data.py'] = 'another hash'
    (data / 'demo_stamp.json').write_text(json.dumps(stamp))
    assert not pretrain_demo.data_is_current(str(data))


def test_steps_record_wall_and_cpu_time(tmp_path, monkeypatch):
    steps = pretrain_demo.Steps()
    monkeypatch.setattr(pretrain_demo, 'REPO', str(tmp_path))
    steps.run('burn', ['-c', 'sum(i * i for i in range(3_000_000))'])
    steps.skip('cached', 'reused')
    steps.report(str(tmp_path / 'timings.json'))
    timings = json.loads((tmp_path / 'timings.json').read_text())
    assert timings['burn']['cpu_s'] > 0.05 and timings['burn']['wall_s'] > 0
    assert timings['cached'] == dict(wall_s=0., cpu_s=0., skipped='reused')
    assert timings['total']['cpu_s'] == timings['burn']['cpu_s']
    with pytest.raises(Exception):
        steps.run('fails', ['-c', 'raise SystemExit(3)'])


def _claims(gains):
    return {claim: dict(model=f'{claim}_acc', model_acc=0.5 + gain,
                        strongest_baseline=f'{claim}_base',
                        baseline_acc=0.5, gain=gain)
            for claim, gain in zip(demo_seeds.CLAIMS, gains)}


def test_seed_summary_and_table():
    metrics = {0: dict(claims=_claims([0.1, 0.2, 0.3, 0.4, 0.5])),
               1: dict(claims=_claims([0.3, 0.2, 0.1, 0.0, -0.1]))}
    summary = demo_seeds.summarize(metrics)
    mim = summary['mim']['gain']
    assert mim['min'] == 0.1 and mim['max'] == 0.3
    assert mim['mean'] == pytest.approx(0.2)
    assert summary['mim']['strongest_baselines'] == ['mim_base']
    fg = summary['fg_from_caption']['gain']
    assert (fg['min'], fg['max']) == (-0.1, 0.5)
    table = demo_seeds.table(summary, [0, 1])
    assert table.splitlines()[0].startswith('| claim | model (mean of 2 ')
    assert '| mim | 0.700 | mim_base | 0.500 | +0.200 [+0.100, +0.300] | ' \
        'reported only |' in table
    assert '| mlm | 0.700 | mlm_base | 0.500 | +0.200 [+0.100, +0.300] | ' \
        f'{demo_seeds.THRESHOLDS["mlm"]:+.3f} |' in table
