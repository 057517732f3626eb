"""mmvlp.LayerDecayOptimWrapperConstructor inside real task models.

The models are built from user-style mmpretrain and mmseg configs
(``custom_imports`` + ``mmvlp.`` types, the toolbox's default scope), and the
optimizer wrapper through mmengine's ``build_optim_wrapper`` from the scoped
constructor name, as a Runner does.
"""
import importlib
import logging
import re
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmvlp.engine  # noqa: F401
from mmvlp.models import BEiT3

LAYERS = 3
BACKBONE = ("dict(type='mmvlp.BEiT3', arch=dict(embed_dims=32, "
            f"num_layers={LAYERS}, num_heads=2, feedforward_channels=64), "
            "img_size=32, max_text_len=16, vocab_size=100, "
            "text_mask_token_id=99, {extra})")
HEADER = ("custom_imports = dict(imports=['mmvlp.models', 'mmvlp.engine'], "
          "allow_failed_imports=False)\n")
CONFIGS = {
    'mmpretrain': HEADER + textwrap.dedent(f"""
        model = dict(
            type='ImageClassifier',
            backbone={BACKBONE.format(extra="out_type='avg_featmap', final_norm=False")},
            head=dict(type='mmvlp.BEiT3ClsHead', num_classes=3,
                      in_channels=32))
        """),
    'mmseg': HEADER + textwrap.dedent(f"""
        model = dict(
            type='EncoderDecoder',
            backbone={BACKBONE.format(extra="out_type='featmap', out_indices=(0, 2), vision_only=True")},
            decode_head=dict(type='FCNHead', in_channels=32, in_index=1,
                             channels=16, num_convs=1, num_classes=4,
                             norm_cfg=dict(type='BN', requires_grad=True),
                             align_corners=False,
                             loss_decode=dict(type='CrossEntropyLoss')))
        """),
}
LR, WD, RATE = 1e-3, 0.05, 0.6
OPTIM = dict(
    optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
    constructor='mmvlp.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=RATE))


def _build(scope, tmp_path):
    path = tmp_path / f'{scope}_config.py'
    path.write_text(CONFIGS[scope])
    cfg = Config.fromfile(str(path))
    init_default_scope(scope)
    return importlib.import_module(f'{scope}.registry').MODELS.build(
        cfg.model)


def expected_depth(name: str) -> int:
    """The BEiT-3 rule, written independently of ``get_layer_depth``."""
    if not name.startswith('backbone.'):
        return LAYERS + 1
    rest = name[len('backbone.'):]
    if rest.split('.')[0] in ('cls_token', 'mask_token', 'pos_embed_vision',
                              'pos_embed_text', 'patch_embed', 'text_embed'):
        return 0
    match = re.match(r'layers\.(\d+)\.', rest)
    return int(match.group(1)) + 1 if match else LAYERS + 1


def expected_decay(name: str, param: torch.Tensor) -> float:
    leaf = name.rsplit('.', 1)[-1]
    if param.ndim <= 1 or leaf.startswith(
            ('cls_token', 'mask_token', 'pos_embed')):
        return 0.
    return WD


def _group_of(optim_wrapper):
    return {id(p): g for g in optim_wrapper.optimizer.param_groups
            for p in g['params']}


def _check_groups(model, optim_wrapper):
    group_of = _group_of(optim_wrapper)
    trainable = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad]
    # Every trainable parameter is in exactly one group, nothing else is.
    assert len(group_of) == len(trainable) == sum(
        len(g['params']) for g in optim_wrapper.optimizer.param_groups)
    for name, param in trainable:
        group = group_of[id(param)]
        depth = expected_depth(name)
        scale = RATE**(LAYERS + 1 - depth)
        assert group['layer_depth'] == depth, name
        assert group['lr_scale'] == pytest.approx(scale, rel=1e-12), name
        assert group['lr'] == pytest.approx(LR * scale, rel=1e-12), name
        assert group['weight_decay'] == expected_decay(name, param), name
    return group_of


def test_lr_scale_and_decay_in_mmpretrain_classifier(tmp_path):
    model = _build('mmpretrain', tmp_path)
    init_default_scope('mmpretrain')
    optim_wrapper = build_optim_wrapper(model, OPTIM)
    group_of = _check_groups(model, optim_wrapper)
    named = dict(model.named_parameters())
    # Both experts of one layer share a depth and a scale; embeddings of
    # both modalities are depth 0; the head gets the full learning rate.
    layer = 'backbone.layers.1.ffn.{}.fc1.weight'
    assert group_of[id(named[layer.format('vision')])]['lr_scale'] == \
        group_of[id(named[layer.format('text')])]['lr_scale'] == RATE**2
    for name in ('backbone.text_embed.weight', 'backbone.pos_embed_text',
                 'backbone.patch_embed.proj.weight'):
        assert group_of[id(named[name])]['lr_scale'] == RATE**(LAYERS + 1)
    assert group_of[id(named['head.fc.weight'])]['lr'] == LR
    assert group_of[id(named['head.fc_norm.weight'])]['weight_decay'] == 0
    # The first group is the top one, so the logged lr is the peak lr.
    assert optim_wrapper.get_lr()['lr'][0] == LR
    # Groups are merged: one per (depth, weight decay) here.
    assert len(optim_wrapper.optimizer.param_groups) == 2 * (LAYERS + 2)


def test_mmseg_encoder_decoder_vision_only(tmp_path):
    model = _build('mmseg', tmp_path)
    assert not any('.text.' in n or 'text_embed' in n
                   for n, _ in model.named_parameters())
    init_default_scope('mmseg')  # the scoped name resolves from mmseg too
    optim_wrapper = build_optim_wrapper(model, OPTIM)
    group_of = _check_groups(model, optim_wrapper)
    # The frozen mask token of a vision-only backbone is left out.
    assert not model.backbone.mask_token.requires_grad
    assert id(model.backbone.mask_token) not in group_of
    head = dict(model.decode_head.named_parameters())['conv_seg.weight']
    assert group_of[id(head)]['lr_scale'] == 1.


def test_summary_is_one_line_per_depth(tmp_path):
    model = _build('mmpretrain', tmp_path)
    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Catch()
    logger.addHandler(handler)
    try:
        build_optim_wrapper(model, OPTIM)
    finally:
        logger.removeHandler(handler)
    summary = [r for r in records if r.startswith('Layer-wise lr decay')]
    assert len(summary) == 1
    lines = summary[0].splitlines()
    assert len(lines) == 2 + LAYERS + 2  # title, header, one per depth
    assert 'over backbone (BEiT3, 3 layers)' in lines[0]


def test_custom_keys_and_explicit_backbone():
    init_default_scope('mmvlp')
    model = torch.nn.Module()
    model.encoder = BEiT3(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                    feedforward_channels=64),
                          img_size=32, vocab_size=100, max_text_len=16,
                          text_mask_token_id=99)
    cfg = dict(OPTIM, paramwise_cfg=dict(
        layer_decay_rate=0.5, backbone='encoder',
        custom_keys={'patch_embed': dict(lr_mult=0.1, decay_mult=0.)}))
    optim_wrapper = build_optim_wrapper(model, cfg)
    group_of = _group_of(optim_wrapper)
    patch = model.encoder.patch_embed.proj.weight
    assert group_of[id(patch)]['lr_scale'] == pytest.approx(0.5**3 * 0.1)
    assert group_of[id(patch)]['weight_decay'] == 0
    qkv = model.encoder.layers[0].attn.qkv.vision.weight
    assert group_of[id(qkv)]['lr_scale'] == 0.5**2
    assert group_of[id(qkv)]['weight_decay'] == WD


@pytest.mark.parametrize('paramwise,message', [
    (dict(), 'needs paramwise_cfg=dict(layer_decay_rate'),
    (dict(layer_decay_rate=1.5), 'must be in (0, 1]'),
    (dict(layer_decay_rate=0.6, norm_decay_mult=0.), "Unknown paramwise_cfg"),
    (dict(layer_decay_rate=0.6, backbone='nope'), 'is not a submodule'),
])
def test_bad_config(paramwise, message):
    init_default_scope('mmvlp')
    model = torch.nn.Module()
    model.backbone = BEiT3(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                     feedforward_channels=64), img_size=32,
                           vocab_size=100, max_text_len=16,
                           text_mask_token_id=99)
    with pytest.raises(ValueError, match=re.escape(message)):
        build_optim_wrapper(model, dict(OPTIM, paramwise_cfg=paramwise))


def test_model_without_beit3_names_the_fix():
    init_default_scope('mmvlp')
    with pytest.raises(ValueError, match="found no BEiT3.*backbone="):
        build_optim_wrapper(torch.nn.Linear(2, 2), OPTIM)
