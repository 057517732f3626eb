"""The benchmarks in ``benchmarks/`` run end to end with tiny settings (to
keep them working; no timing is asserted) and their memory meter measures
what it should."""
import json
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import backbone, common, data_pipeline, tokenizer  # noqa

TINY_ARCH = json.dumps(dict(embed_dims=64, num_layers=2, num_heads=2,
                            feedforward_channels=128))
FAST = ['--repeats', '2', '--warmup', '0']


def _result_line(capsys):
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith('RESULT ')]
    assert len(lines) == 1
    return dict(field.split('=', 1) for field in lines[0].split()[1:])


def test_cpu_memory_meter_sees_an_allocation():
    device = torch.device('cpu')
    with common.cpu_memory_tracking() as tracking:
        if not tracking:
            pytest.skip('needs Linux with glibc (mallopt, clear_refs)')
        with common.peak_memory(device) as mem:
            block = torch.ones(64, 2**20)  # 256 MiB, touched
            del block
        with common.peak_memory(device) as small:
            block = torch.ones(2**20)  # 4 MiB
            del block
    assert 250 <= mem['peak_mib'] <= 290, mem
    assert small['peak_mib'] < 40, small


def test_compare_reports_speedup_per_round():
    base = [dict(wall_s=2., cpu_s=1.), dict(wall_s=4., cpu_s=2.)]
    cand = [dict(wall_s=1., cpu_s=1.), dict(wall_s=1., cpu_s=1.)]
    stats = common.compare(base, cand)
    assert stats['wall_s']['ratio_per_round'] == [2., 4.]
    assert stats['wall_s']['speedup'] == 3.
    assert stats['cpu_s']['speedup'] == 1.5


def test_backbone_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'backbone.json'
    payload = backbone.main(['--arch', TINY_ARCH, '--img-size', '32',
                             '--text-len', '8', '--batch-size', '2',
                             '--device', 'cpu', '--dtype', 'fp32',
                             '--out', str(out), *FAST])
    result = _result_line(capsys)
    assert result['json'] == str(out) and 'image_text_speedup' in result
    # The GEMM floor ran beside both models and bounds the speed-up.
    assert float(result['image_bound']) > 0
    assert float(result['image_text_bound']) > 0
    saved = json.loads(out.read_text())
    for mode in backbone.MODES:
        entry = saved['modes'][mode]
        assert entry['output_max_abs_diff_fp32'] < 1e-4  # same model
        assert 'official_fp32' not in entry['samples']  # fp32 run
        assert len(entry['samples']['official']) == 2
        assert len(entry['samples']['gemm_floor']) == 2
        memory = saved['memory'][mode]
        assert set(memory) >= {'official', 'mmvlp', 'mmvlp_with_cp'}
        assert memory['official']['gradients_mib'] > 0
    # The text experts and the text table only get gradients with text.
    assert (saved['memory']['image_text']['mmvlp']['gradients_mib'] >
            saved['memory']['image']['mmvlp']['gradients_mib'])
    assert payload['settings']['precision'] == 'fp32'
    assert payload['settings']['memory_batch_size'] == backbone.MEMORY_BATCH


def test_backbone_benchmark_tiny_bf16(tmp_path, capsys):
    """bf16: both models under autocast, the GEMM floor in bf16 and the
    official fp32 step in the same rounds; the settings are recorded."""
    out = tmp_path / 'backbone.json'
    payload = backbone.main(['--arch', TINY_ARCH, '--img-size', '32',
                             '--text-len', '8', '--batch-size', '2',
                             '--device', 'cpu', '--dtype', 'bf16',
                             '--no-memory', '--modes', 'image',
                             '--out', str(out), *FAST])
    result = _result_line(capsys)
    assert result['precision'] == 'bf16-autocast'
    for key in ('image_speedup', 'image_speedup_vs_fp32', 'image_bound',
                'image_over_floor'):
        assert float(result[key]) > 0, key
    entry = json.loads(out.read_text())['modes']['image']
    assert set(entry['samples']) == {'official', 'mmvlp', 'gemm_floor',
                                     'official_fp32'}
    assert entry['attention_kernel'] == 'explicit'
    # bf16 really ran (outputs differ from each other's by bf16 rounding,
    # not by 1e-7), and the models agree to bf16 precision.
    assert 1e-4 < entry['output_rel_diff'] < 0.05
    settings = payload['process_settings']
    assert settings['torch_threads'] == torch.get_num_threads()
    assert settings['aten_cpu_capability'] == \
        torch.backends.cpu.get_cpu_capability()
    assert 'onednn' in settings


def test_training_step_runs_under_autocast():
    model = torch.nn.Linear(4, 4)
    seen = []

    def forward():
        out = model(torch.ones(2, 4))
        seen.append(out.dtype)
        return out

    for dtype in (torch.bfloat16, torch.float32):
        step = backbone.training_step(model, forward, torch.device('cpu'),
                                      dtype)
        step()
        assert step.grad_mib > 0 and model.weight.grad is None
    assert seen == [torch.bfloat16, torch.float32]


def test_onednn_info_reports_the_bf16_kernel():
    if not torch.backends.mkldnn.is_available():
        pytest.skip('torch built without oneDNN')
    info = common.onednn_info()
    assert info.get('error') is None, info
    assert info['isa'] and info['bf16_matmul_kernel']
    assert info['amx'] == ('amx' in info['bf16_matmul_kernel'])
    assert common.describe_settings(dict(
        torch_threads=1, omp_num_threads='1', aten_cpu_capability='X',
        cpu_bf16_units=[], onednn=info)).count(info['isa']) == 1


def test_step_flops_counts_the_matmuls():
    """The analytic model FLOPs of a step match torch's FLOP counter on
    mmvlp's forward (x3 for forward + backward)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from mmvlp.models import BEiT3
    args = backbone.parse_args(['--arch', TINY_ARCH, '--img-size', '32',
                                '--text-len', '8', '--batch-size', '2'])
    model = BEiT3(arch=args.arch, img_size=32)
    inputs = backbone.make_inputs(args, torch.device('cpu'))
    for mode, text in (('image', None), ('image_text', inputs['text'])):
        # The math kernel runs attention as matmuls, which are counted.
        with FlopCounterMode(display=False) as counter, \
                sdpa_kernel(SDPBackend.MATH):
            model.forward_sequence(images=inputs['images'], text_ids=text)
        expected = backbone.step_flops(args, args.arch, mode)
        assert counter.get_total_flops() * 3 == pytest.approx(expected,
                                                              rel=1e-6)


def test_gemm_floor_does_the_steps_arithmetic():
    """The GEMM floor multiplies exactly the step's matrices: the model
    FLOPs of a step minus the patch projection's input gradient, which a
    step never computes (images need no gradient)."""
    from torch.utils.flop_counter import FlopCounterMode
    args = backbone.parse_args(['--arch', TINY_ARCH, '--img-size', '32',
                                '--text-len', '8', '--batch-size', '2'])
    device = torch.device('cpu')
    patches = args.batch_size * (32 // 16)**2
    patch_grad = 2 * patches * 3 * 16**2 * json.loads(TINY_ARCH)[
        'embed_dims']
    for mode in backbone.MODES:
        for dtype in (torch.float32, torch.bfloat16):
            step = backbone.gemm_floor(args, args.arch, mode, device, dtype)
            with FlopCounterMode(display=False) as counter:
                step()
            expected = backbone.step_flops(args, args.arch, mode) - \
                patch_grad
            assert counter.get_total_flops() == expected


def test_tokenizer_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'tokenizer.json'
    tokenizer.main(['--arch', TINY_ARCH, '--img-size', '32',
                    '--num-codes', '64', '--code-dims', '8',
                    '--batch-size', '2', '--device', 'cpu', '--out',
                    str(out), *FAST])
    result = _result_line(capsys)
    assert float(result['token_agreement']) == 1.0
    # The compiled encoder really ran compiled (a fallback raises) and gives
    # the same ids up to float near-ties.
    assert float(result['token_agreement_compiled']) >= 0.95
    assert float(result['compile_s']) > 0
    payload = json.loads(out.read_text())
    assert set(payload['images_per_s']) == {'mmpretrain', 'mmvlp',
                                            'mmvlp_compiled'}
    assert float(result['speedup']) == pytest.approx(
        payload['comparison']['mmvlp_compiled']['wall_s']['speedup'],
        rel=1e-3)


def test_data_pipeline_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / 'data.json'
    payload = data_pipeline.main([
        '--data-dir', str(tmp_path / 'data'), '--num-images', '4',
        '--image-size', '64', '--samples', '3', '--repeats', '1',
        '--masks', '5', '--step-arch', 'tiny', '--step-batch-size', '1',
        '--step-repeats', '1', '--out', str(out)])
    result = _result_line(capsys)
    assert float(result['min_margin']) > 0
    assert set(payload['samples_per_s']) == set(data_pipeline.SOURCES)
    assert osp.exists(tmp_path / 'data' / 'jpg' / '00000.jpg')


def test_demo_step_benchmark_tiny(tmp_path, capsys):
    from benchmarks import demo_step
    out = tmp_path / 'demo_step.json'
    assert demo_step.main(['--num-train', '24', '--threads', '1',
                           '--out', str(out), *FAST]) == 0
    result = _result_line(capsys)
    assert float(result['fp32_s']) > 0 and float(result['bf16_s']) > 0
    assert float(result['tokenizer_s']) > 0
    payload = json.loads(out.read_text())
    pretrain = payload['pretrain']
    assert float(result['bf16_speedup']) == pytest.approx(
        pretrain['wall_s']['speedup'], abs=0.01)
    assert len(pretrain['samples']['fp32']) == len(
        pretrain['samples']['bf16']) == 2
