"""tools/model_converters/beit3_unilm_to_mmvlp.py on official-format files."""
import importlib.util
import os
import os.path as osp

import pytest
import torch
from mmengine.runner import load_checkpoint

from helpers.reference import TINY, build_reference, official_checkpoint
from mmengine.registry import init_default_scope

from mmvlp.models import BEiT3
from mmvlp.models.converters import (convert_unilm_beit3, detect_task,
                                     map_official_beit3, unwrap_checkpoint)
from mmvlp.models.converters.checks import check_against_model
from mmvlp.registry import MODELS

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
    """An ImageNet file (fc_norm / head beside the backbone, no final norm)
    becomes the weights of the whole classifier: the task is read from the
    heads, the printed config builds a model that loads them strictly."""
    heads = {'fc_norm.weight': torch.ones(64), 'fc_norm.bias': torch.zeros(64),
             'head.weight': torch.randn(10, 64), 'head.bias': torch.zeros(10)}
    src = _official(reference, tmp_path, wrapper='module',
                    drop_final_norm=True, heads=heads)
    dst = tmp_path / 'out' / 'beit3_mmvlp.pth'
    assert _tool().main([str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert 'official imagenet file -> mmvlp imagenet' in printed
    assert 'fc_norm.weight -> head.fc_norm.weight' in printed
    assert 'head.weight -> head.fc.weight' in printed
    assert "'type': 'mmvlp.BEiT3ImageClassifier'" in printed
    assert 'dropped' in printed and 'text-only' in printed

    converted = torch.load(dst, weights_only=True)
    cfg = converted['meta']['model_cfg']
    assert converted['meta']['task'] == 'imagenet'
    assert cfg['backbone']['final_norm'] is False
    assert cfg['backbone']['vision_only'] is True
    assert cfg['head'] == dict(type='mmvlp.BEiT3ClsHead', num_classes=10,
                               in_channels=64)
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(cfg, data_preprocessor=dict(
        type='mmpretrain.ClsDataPreprocessor')))
    # strict=True: no missing or unexpected keys.
    load_checkpoint(model, str(dst), strict=True, logger='silent')
    torch.testing.assert_close(model.head.fc.weight, heads['head.weight'])
    torch.testing.assert_close(
        model.backbone.layers[1].attn.qkv.vision.weight,
        torch.cat([reference.encoder.layers[1].self_attn.q_proj.A.weight,
                   reference.encoder.layers[1].self_attn.k_proj.A.weight,
                   reference.encoder.layers[1].self_attn.v_proj.A.weight]))


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
    assert 'beit3.encoder.embed_positions.A.weight' in err
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


def _weights(reference, **heads):
    return dict(unwrap_checkpoint(official_checkpoint(reference)), **heads)


def test_any_torchscale_beit3_converts(tmp_path):
    """Odd widths, depths, FFN and patch sizes, a vocabulary below the
    default mask id (64001) and a non-square-free grid: converted, the
    printed config builds a backbone that loads strictly and gives the
    torchscale outputs."""
    arch = dict(embed_dims=36, num_layers=3, num_heads=4,
                feedforward_channels=50)
    reference = build_reference(arch, img_size=36, patch_size=12,
                                vocab_size=77)
    state, report = convert_unilm_beit3(_weights(reference))
    cfg = report.backbone_cfg(num_heads=4)
    assert cfg['vocab_size'] == 77 and cfg['text_mask_token_id'] is None
    assert (cfg['img_size'], cfg['patch_size']) == (36, 12)
    cfg.pop('type')
    model = BEiT3(**cfg).eval()
    model.load_state_dict(state, strict=True)
    images = torch.randn(2, 3, 36, 36)
    text = torch.randint(3, 77, (2, 6))
    with torch.no_grad():
        expected = reference(textual_tokens=text,
                             visual_tokens=images)['encoder_out']
        got = model.forward_sequence(images=images, text_ids=text)
    assert (got - expected).abs().max() <= 1e-4
    with pytest.raises(ValueError, match='text_mask_token_id=None'):
        model.forward_sequence(text_ids=text, text_mask=text > 0)


@pytest.mark.parametrize('single_way', [False, True])
def test_vision_only_files_become_vision_only_backbones(reference,
                                                        single_way):
    """Vision parts only (no text table / positions / experts), with the
    multiway names (``.A.``) or without experts at all: a vision-only
    backbone with the torchscale image outputs."""
    weights = {}
    for key, value in _weights(reference).items():
        if 'text_embed' in key or '.B.' in key:
            continue
        if single_way:
            key = key.replace('.A.', '.')
        weights[key] = value
    weights.pop('beit3.vision_embed.mask_token')
    state, report = convert_unilm_beit3(weights)
    assert report.vision_only and report.vocab_size is None
    assert any('mask_token' in n for n in report.notes)
    cfg = report.backbone_cfg(num_heads=4)
    assert cfg['vision_only'] is True and 'vocab_size' not in cfg
    cfg.pop('type')
    model = BEiT3(**cfg).eval()
    model.load_state_dict(state, strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(textual_tokens=None,
                             visual_tokens=images)['encoder_out']
        got = model.forward_sequence(images=images)
    assert (got - expected).abs().max() <= 1e-4


def test_task_detection(reference):
    w = torch.zeros(2)
    assert detect_task(_weights(reference)) == 'backbone'
    assert detect_task(_weights(reference, **{'mlm_head.weight': w,
                                              'mlm_head.bias': w})) == \
        'captioning'
    # A pretrained file with pretraining heads besides an mlm_head.
    assert detect_task(_weights(reference, **{
        'mlm_head.weight': w, 'mim_head.weight': w})) == 'backbone'
    assert detect_task({'pooler.dense.weight': w, 'head.3.weight': w}) == \
        'vqav2'
    assert detect_task({'head.dense1.weight': w}) == 'nlvr2'
    assert detect_task({'vision_head.weight': w, 'logit_scale': w}) == \
        'retrieval'
    with pytest.raises(ValueError, match='heads of several tasks'):
        detect_task({'fc_norm.weight': w, 'pooler.dense.weight': w})
    mapping = map_official_beit3(_weights(reference, **{
        'mim_head.weight': w}))
    assert mapping.task == 'backbone'
    assert mapping.unused == {
        'mim_head.weight': 'not part of any official task model'}


def test_tool_task_option_and_config_fit(reference, tmp_path, capsys):
    """--task overrides the detection; --config fits the weights to a
    config's model (a 32 px file into a 48 px config: positions resized)
    so that the output loads strictly into that model."""
    heads = {'pooler.norm.weight': torch.randn(64),
             'pooler.norm.bias': torch.randn(64),
             'pooler.dense.weight': torch.randn(64, 64),
             'pooler.dense.bias': torch.randn(64),
             'head.0.weight': torch.randn(128, 64),
             'head.0.bias': torch.randn(128),
             'head.1.weight': torch.randn(128),
             'head.1.bias': torch.randn(128),
             'head.3.weight': torch.randn(5, 128),
             'head.3.bias': torch.randn(5)}
    src = _official(reference, tmp_path, drop_final_norm=True, heads=heads)
    config = tmp_path / 'vqa_48.py'
    config.write_text(
        "default_scope = 'mmvlp'\n"
        "model = dict(type='BEiT3VQA', answers=[str(i) for i in range(5)],\n"
        "             backbone=dict(type='BEiT3', arch=dict(embed_dims=64,\n"
        "                 num_layers=2, num_heads=4,\n"
        "                 feedforward_channels=128),\n"
        "                 img_size=48, final_norm=False))\n")
    dst = tmp_path / 'vqa_48_mmvlp.pth'
    assert _tool().main([str(src), str(dst), '--config', str(config)]) == 0
    assert 'resized the image position table from 2x2 to 3x3' in \
        capsys.readouterr().out
    init_default_scope('mmvlp')
    from mmengine.config import Config
    model = MODELS.build(Config.fromfile(str(config)).model)
    load_checkpoint(model, str(dst), strict=True, logger='silent')
    torch.testing.assert_close(model.head[3].weight, heads['head.3.weight'])
    # The same file as a plain backbone.
    dst = tmp_path / 'backbone.pth'
    assert _tool().main([str(src), str(dst), '--task', 'backbone']) == 0
    keys = torch.load(dst, weights_only=True)['state_dict']
    assert 'cls_token' in keys and not any(k.startswith('pooler') for k in
                                           keys)
