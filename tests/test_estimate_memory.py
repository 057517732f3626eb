"""tools/analysis_tools/estimate_memory.py: parameter counts against the
built models, activation counts against a real CPU run, the per-strategy
accounting; tools/analysis_tools/summarize_benchmark.py on a synthetic
log."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmvlp.models import BEiT3
from mmvlp.registry import MODELS

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'estimate_memory.py')
spec = importlib.util.spec_from_file_location('estimate_memory', TOOL)
em = importlib.util.module_from_spec(spec)
spec.loader.exec_module(em)

DEMO = osp.join(REPO, 'configs', 'demo', 'beit3-tiny-p8_demo-pretrain.py')
TINY = dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                      feedforward_channels=128),
            img_size=32, patch_size=8, max_text_len=16, vocab_size=100,
            text_mask_token_id=99)


def _demo_cfg():
    cfg = Config.fromfile(DEMO)
    cfg.model.tokenizer_checkpoint = None
    return cfg


def test_parameter_counts_match_the_built_models():
    cfg = _demo_cfg()
    counts = em.count_parameters(em.build_meta_model(cfg))
    init_default_scope('mmvlp')
    model = MODELS.build(cfg.model)
    assert counts['trainable'] == sum(
        p.numel() for p in model.parameters() if p.requires_grad)
    assert counts['frozen'] == sum(
        p.numel() for p in model.parameters() if not p.requires_grad) > 0
    assert counts['backbone'] == sum(
        p.numel() for p in model.backbone.parameters())
    assert counts['largest_layer'] == sum(
        p.numel() for p in model.backbone.layers[0].parameters())
    # The base backbone, built for real.
    with torch.device('meta'):
        meta = BEiT3(arch='base')
    real = BEiT3(arch='base')
    assert sum(p.numel() for p in meta.parameters()) == sum(
        p.numel() for p in real.parameters())


def test_giant_recipe_has_the_papers_size():
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'beit3', 'beit3-giant-p14_64xb32x3-1m_pretrain.py'))
    counts = em.count_parameters(em.build_meta_model(cfg))
    # The paper: 1.9B parameters (backbone 1.85B + MIM/MLM heads).
    assert 1.8e9 < counts['trainable'] < 2.0e9
    assert 1.8e9 < counts['backbone'] < 1.9e9


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_activation_counts_follow_a_real_run(dtype):
    for with_cp in (False, True):
        torch.manual_seed(0)
        real = em.activation_bytes(BEiT3(**TINY), with_cp, dtype=dtype)
        with torch.device('meta'):
            meta_model = BEiT3(**TINY)
        meta = em.activation_bytes(meta_model, with_cp, dtype=dtype)
        for source in ('image', 'text', 'pair'):
            # The meta device runs the reference attention, which keeps
            # more than the CPU kernel: an upper bound within 40 %.
            assert 0.99 * real[source] <= meta[source] <= 1.4 * real[
                source], (dtype, with_cp, source, real, meta)
    full = em.activation_bytes(BEiT3(**TINY), False, dtype=dtype)
    cp = em.activation_bytes(BEiT3(**TINY), True, dtype=dtype)
    assert all(cp[s] * 3 < full[s] for s in full)


def test_model_states_per_strategy():
    counts = dict(trainable=1000, frozen=100, backbone=900, largest_layer=10)
    one = {s: sum(em.model_state_bytes(s, counts, 1).values())
           for s in em.STRATEGIES}
    # One GPU: 16 bytes per trainable parameter whatever the strategy, the
    # frozen ones whole in fp32 (kept outside DeepSpeed and FSDP), and the
    # gathered layers of ZeRO-3 / FSDP.
    assert one['ddp'] == 16 * 1000 + 4 * 100
    assert one['zero1'] == one['zero2'] == 16 * 1000 + 4 * 100
    assert one['zero3'] == 16 * 1000 + 4 * 100 + 2 * 2 * 10
    assert one['fsdp'] == 16 * 1000 + 4 * 100 + 2 * 4 * 10
    eight = {s: em.model_state_bytes(s, counts, 8) for s in em.STRATEGIES}
    assert eight['zero1']['optimizer'] == 12 * 1000 / 8
    assert eight['zero2']['gradients'] == 2 * 1000 / 8
    assert eight['zero3']['weights'] == 2 * 1000 / 8 + 40
    assert all(eight[s]['frozen'] == 4 * 100 for s in em.STRATEGIES)
    with pytest.raises(ValueError, match='Unknown strategy'):
        em.model_state_bytes('zero4', counts, 8)


def test_estimate_table():
    result = em.estimate(_demo_cfg(), gpus=8)
    rows = result['per_gpu_bytes']
    assert set(rows) == set(em.STRATEGIES)
    for row in rows.values():
        assert row['total_with_cp'] < row['total_no_cp']
    assert rows['zero3']['total_no_cp'] < rows['ddp']['total_no_cp']
    table = em.format_table(result)
    assert table.count('\n| ') == len(em.STRATEGIES) + 1


def test_summarize_benchmark(tmp_path):
    tool = osp.join(REPO, 'tools', 'analysis_tools', 'summarize_benchmark.py')
    spec = importlib.util.spec_from_file_location('summarize', tool)
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    work_dir = tmp_path / 'beit3-base_zero2'
    (work_dir / '20990101_000000' / 'vis_data').mkdir(parents=True)
    (work_dir / 'beit3-base_zero2.py').write_text(
        'train_dataloader = dict(image=dict(batch_size=32), '
        'text=dict(batch_size=32), pair=dict(batch_size=32))\n')
    lines = [dict(iter=i, loss=10. - i / 100, time=0.5 if i > 50 else 2.,
                  memory=30000 + i) for i in range(10, 310, 10)]
    (work_dir / '20990101_000000' / 'vis_data' / 'scalars.json').write_text(
        '\n'.join(json.dumps(line) for line in lines))
    row = summarize.summarize(summarize.load_run(str(work_dir)), gpus=8)
    assert row['seconds_per_iter'] == 0.5  # warm-up left out
    assert row['samples_per_second'] == 8 * 96 / 0.5
    assert row['peak_memory_gib'] == 30300 / 1024
    assert row['loss'] == {10: 9.9, 50: 9.5, 100: 9.0, 200: 8.0, 300: 7.0}
    table = summarize.format_rows([row])
    assert '| beit3-base_zero2 | 8 | 0.500 | 1536 | 29.6 |' in table
