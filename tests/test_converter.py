"""tools/model_converters/beit3_unilm_to_mmvlp.py on official-format files."""
import importlib.util
import os
import os.path as osp

import pytest
import torch
from mmengine.runner import load_checkpoint

from helpers.reference import TINY, build_reference, official_checkpoint
from mmvlp.models import BEiT3
from mmvlp.models.converters import convert_unilm_beit3, unwrap_checkpoint
from mmvlp.models.converters.checks import check_against_model

TOOL = osp.join(osp.dirname(__file__), '..', 'tools', 'model_converters',
                'beit3_unilm_to_mmvlp.py')


def _tool():
    spec = importlib.util.spec_from_file_location('beit3_converter', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def reference():
    return build_reference(TINY, img_size=32)


def _official(reference, tmp_path, wrapper='model', drop_final_norm=False,
              heads=None):
    checkpoint = official_checkpoint(reference, wrapper, heads)
    if drop_final_norm:  # like the ImageNet / VQA fine-tuned releases
        checkpoint[wrapper] = {k: v for k, v in checkpoint[wrapper].items()
                               if 'encoder.layer_norm' not in k}
    path = tmp_path / 'official.pth'
    torch.save(checkpoint, path)
    return path


def test_tool_converts_fine_tuned_checkpoint(reference, tmp_path, capsys):
    heads = {'fc_norm.weight': torch.ones(64), 'fc_norm.bias': torch.zeros(64),
             'head.weight': torch.randn(10, 64), 'head.bias': torch.zeros(10)}
    src = _official(reference, tmp_path, wrapper='module',
                    drop_final_norm=True, heads=heads)
    dst = tmp_path / 'out' / 'beit3_mmvlp.pth'
    assert _tool().main([str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert 'final norm: no (set final_norm=False)' in printed
    assert 'fc_norm.bias, fc_norm.weight, head.bias, head.weight' in printed

    converted = torch.load(dst, weights_only=True)
    cfg = converted['meta']['backbone_cfg']
    assert cfg['final_norm'] is False and cfg['img_size'] == 32
    assert set(converted['task_heads']) == set(heads)
    cfg.pop('type')
    model = BEiT3(**cfg)
    # strict=True: no missing or unexpected backbone keys.
    load_checkpoint(model, str(dst), strict=True, logger='silent')
    torch.testing.assert_close(
        model.pos_embed_text[0],
        reference.encoder.embed_positions.B.weight[2:])
    torch.testing.assert_close(
        model.layers[1].attn.qkv.text.weight,
        torch.cat([reference.encoder.layers[1].self_attn.q_proj.B.weight,
                   reference.encoder.layers[1].self_attn.k_proj.B.weight,
                   reference.encoder.layers[1].self_attn.v_proj.B.weight]))


def test_tool_prefix_for_whole_models(reference, tmp_path):
    src = _official(reference, tmp_path)
    dst = tmp_path / 'prefixed.pth'
    assert _tool().main([str(src), str(dst), '--prefix', 'backbone.']) == 0
    keys = torch.load(dst, weights_only=True)['state_dict']
    assert all(k.startswith('backbone.') for k in keys)
    # Loads through mmengine's Pretrained init with prefix='backbone.'.
    model = BEiT3(arch=TINY, img_size=32,
                  init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.cls_token,
                               reference.vision_embed.cls_token)


def test_tool_refuses_other_checkpoints(tmp_path, capsys):
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, path)
    assert _tool().main([str(path), str(tmp_path / 'x.pth')]) == 1
    err = capsys.readouterr().err
    assert 'not an official BEiT-3 checkpoint' in err
    assert 'beit3.encoder.embed_positions.{A,B}.weight' in err
    assert not (tmp_path / 'x.pth').exists()


def test_layout_mismatch_is_refused(reference):
    weights = unwrap_checkpoint(official_checkpoint(reference))
    with pytest.raises(ValueError, match='use --layout decoupled'):
        convert_unilm_beit3(weights, layout='shared')


def test_unknown_and_inconsistent_keys(reference):
    weights = unwrap_checkpoint(official_checkpoint(reference))
    extra = dict(weights, **{'beit3.encoder.layers.0.adapter.weight':
                             torch.zeros(2)})
    with pytest.raises(ValueError, match='adapter.weight'):
        convert_unilm_beit3(extra)
    broken = dict(weights)
    broken['beit3.encoder.layers.1.ffn.B.fc2.weight'] = torch.zeros(64, 3)
    with pytest.raises(ValueError, match='layers.1.ffn.text.fc2.weight'):
        convert_unilm_beit3(broken)
    missing = {k: v for k, v in weights.items()
               if 'layers.0.self_attn.k_proj.A' not in k}
    with pytest.raises(ValueError, match='incomplete query/key/value'):
        convert_unilm_beit3(missing)


def test_shared_attention_checkpoint(reference):
    """A torchscale checkpoint whose attention is not multiway converts to
    layout='shared' (FFN experts kept, no VL experts)."""
    weights = {}
    for key, value in unwrap_checkpoint(official_checkpoint(reference)).items():
        if '.self_attn.' in key or 'self_attn_layer_norm' in key:
            if '.B.' in key:
                continue
            key = key.replace('.A.', '.')
        weights[key] = value
    state_dict, report = convert_unilm_beit3(weights)
    assert report.layout == 'shared'
    model = BEiT3(arch=TINY, img_size=32, layout='shared', num_vl_layers=0)
    result = model.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_check_against_model_lists_the_offending_keys():
    cfg = dict(arch=TINY, img_size=32)
    state = BEiT3(**cfg).state_dict()
    state.pop('cls_token')
    state['layers.0.adapter.weight'] = torch.zeros(2)
    state['pos_embed_text'] = torch.zeros(1, 5, 64)
    with pytest.raises(ValueError) as info:
        check_against_model(state, BEiT3, cfg, 'BEiT3')
    message = str(info.value)
    assert "missing: ['cls_token']" in message
    assert "unexpected: ['layers.0.adapter.weight']" in message
    assert 'pos_embed_text: (1, 5, 64) (expected (1, 1022, 64))' in message


class _Payload:
    """Pickles as a call of os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_tool_refuses_pickled_code(reference, tmp_path, capsys):
    marker = tmp_path / 'pwned'
    checkpoint = official_checkpoint(reference)
    checkpoint['args'] = _Payload(marker)
    torch.save(checkpoint, tmp_path / 'evil.pth')
    assert _tool().main([str(tmp_path / 'evil.pth'),
                         str(tmp_path / 'out.pth')]) == 1
    assert 'carries a pickled `posix.system`' in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()
