"""benchmarks/gpu_check.py (the prepared first GPU run) works end to end on
CPU with --cpu-smoke: every section runs (or, for the GPU-only pretraining
runs, builds and checks its command and config), the JSON report holds the
numbers, failures and time-outs are recorded, not fatal."""
import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import gpu_check  # noqa: E402


def test_cpu_smoke_runs_every_section(tmp_path, capsys):
    out = tmp_path / 'report.json'
    report = gpu_check.main(['--cpu-smoke', '--work-dir',
                             str(tmp_path / 'work'), '--out', str(out),
                             '--sections', 'backbone_base,pretrain_zero2,'
                             'pretrain_fsdp,caption_decoding'])
    saved = json.loads(out.read_text())
    assert saved['mode'] == 'cpu-smoke' == report['mode']
    sections = saved['sections']
    assert {name: s['status'] for name, s in sections.items()} == {
        'backbone_base': 'ok', 'pretrain_zero2': 'ok', 'pretrain_fsdp': 'ok',
        'caption_decoding': 'ok'}, sections
    backbone = sections['backbone_base']['result']
    for mode in ('image', 'image_text'):
        entry = backbone[mode]
        assert entry['speedup'] > 0 and entry['speedup_vs_fp32'] > 0
        assert entry['mmvlp_over_gemm_floor'] > 0
        assert set(entry['peak_mib']) == {'official', 'mmvlp',
                                          'mmvlp_with_cp'}
    assert backbone['settings']['precision'] == 'bf16-autocast'
    # The pretraining commands point at generated data and parse.
    for name, strategy in (('pretrain_zero2', 'DeepSpeedStrategy'),
                           ('pretrain_fsdp', 'FSDPStrategy')):
        result = sections[name]['result']
        assert result['strategy'] == strategy
        assert 'tools/dist_train.sh' in result['command']
        assert gpu_check.PRETRAIN_CONFIGS[name] in result['command']
        assert 'not run' in result['status']
    captions = sections['caption_decoding']['result']
    assert captions['beam1']['captions_per_s'] > 0
    assert captions['beam3']['captions_per_s'] > 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith('RESULT benchmark=gpu_check') for line in lines)


def test_dist_checks_are_called_when_present(tmp_path, monkeypatch):
    args = gpu_check.parse_args(['--cpu-smoke', '--work-dir', str(tmp_path)])
    monkeypatch.setattr(gpu_check, 'DIST_CHECK', str(tmp_path / 'absent.py'))
    assert 'not run' in gpu_check.section_dist_checks(args)['status']
    script = tmp_path / 'fake_dist_check.py'
    script.write_text('import sys\nprint("RESULT benchmark=dist flags=" + '
                      '",".join(sys.argv[1:]))\n')
    monkeypatch.setattr(gpu_check, 'DIST_CHECK', str(script))
    result = gpu_check.section_dist_checks(args)
    assert result['results'] == [dict(benchmark='dist', flags='--cpu-smoke')]
    script.write_text('import sys\nsys.exit(3)\n')
    with pytest.raises(RuntimeError, match='exit 3'):
        gpu_check.section_dist_checks(args)


def test_sections_run_in_child_processes_with_a_limit(tmp_path):
    args = gpu_check.parse_args(['--cpu-smoke', '--work-dir', str(tmp_path)])
    args.work_dir = str(tmp_path)
    done = gpu_check._child(args, 'dist_checks', limit=60)
    assert done['status'] == 'ok', done
    result = done['result']
    assert 'results' in result or \
        'gpu_dist_check.py' in result.get('status', ''), result
    late = gpu_check._child(args, 'backbone_base', limit=0.5)
    assert late['status'] == 'timeout'


def test_budget_skips_what_does_not_fit(tmp_path):
    report = gpu_check.main(['--cpu-smoke', '--work-dir', str(tmp_path),
                             '--out', str(tmp_path / 'r.json'),
                             '--budget-s', '10', '--sections',
                             'caption_decoding'])
    assert report['sections']['caption_decoding']['status'] == 'skipped'


def test_needs_a_gpu_without_cpu_smoke(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, 'gpu_facts',
                        lambda: dict(gpu=None, cuda_available=False))
    with pytest.raises(SystemExit, match='--cpu-smoke'):
        gpu_check.main(['--work-dir', str(tmp_path)])
