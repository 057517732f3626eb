"""mmvlp's registries and ``type='mmvlp.BEiT3'`` from other toolboxes' configs.

The configs below are written the way a user writes their own mmpretrain,
mmdet or mmseg config: ``custom_imports`` plus ``type='mmvlp.BEiT3'``.
"""
import importlib
import subprocess
import sys
import textwrap

import mmengine.registry as roots
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmvlp.registry as registry

BACKBONE = ("dict(type='mmvlp.BEiT3', arch=dict(embed_dims=32, num_layers=2, "
            "num_heads=2, feedforward_channels=64), img_size=64, "
            "max_text_len=16, vocab_size=100, text_mask_token_id=99, {extra})")
HEADER = ("custom_imports = dict(imports=['mmvlp.models'], "
          "allow_failed_imports=False)\n")

CONFIGS = {
    'mmpretrain': HEADER + textwrap.dedent(f"""
        model = dict(
            type='ImageClassifier',
            backbone={BACKBONE.format(extra="out_type='cls_token'")},
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32,
                      loss=dict(type='CrossEntropyLoss')))
        """),
    'mmseg': HEADER + textwrap.dedent(f"""
        model = dict(
            type='EncoderDecoder',
            backbone={BACKBONE.format(extra="out_type='featmap', out_indices=(0, 1)")},
            decode_head=dict(type='FCNHead', in_channels=32, in_index=1,
                             channels=16, num_convs=1, num_classes=4,
                             norm_cfg=dict(type='BN', requires_grad=True),
                             align_corners=False,
                             loss_decode=dict(type='CrossEntropyLoss')))
        """),
    'mmdet': HEADER + textwrap.dedent(f"""
        model = dict(
            type='RPN',
            backbone={BACKBONE.format(extra="out_type='featmap', out_indices=(0, 1)")},
            neck=dict(type='FPN', in_channels=[32, 32], out_channels=16,
                      num_outs=2),
            rpn_head=dict(
                type='RPNHead', in_channels=16, feat_channels=16,
                num_classes=1,
                anchor_generator=dict(type='AnchorGenerator', scales=[4],
                                      ratios=[1.0], strides=[16, 16]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                                target_means=[0.] * 4, target_stds=[1.] * 4),
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True),
                loss_bbox=dict(type='L1Loss')),
            train_cfg=None,
            test_cfg=dict(rpn=dict(nms_pre=50, max_per_img=5, min_bbox_size=0,
                                   nms=dict(type='nms', iou_threshold=0.7))))
        """),
}


REGISTRY_NAMES = [n for n in registry.__all__
                  if isinstance(getattr(registry, n), roots.Registry)]


def test_registries_are_mmvlp_children_of_mmengine_roots():
    assert len(REGISTRY_NAMES) == 23
    for name in REGISTRY_NAMES:
        child = getattr(registry, name)
        assert child.scope == 'mmvlp', name
        assert child.parent is getattr(roots, name), name


def test_registry_locations_import():
    locations = {loc for name in REGISTRY_NAMES
                 for loc in getattr(registry, name)._locations}
    assert 'mmvlp.models' in locations
    for location in locations:
        importlib.import_module(location)


def test_beit3_in_mmvlp_scope():
    init_default_scope('mmvlp')
    model = registry.MODELS.build(dict(type='BEiT3', arch='tiny',
                                       img_size=32))
    assert type(model).__name__ == 'BEiT3'


def _load(scope, tmp_path):
    path = tmp_path / f'{scope}_user_config.py'
    path.write_text(CONFIGS[scope])
    cfg = Config.fromfile(str(path))
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    return models.build(cfg.model)


def test_mmpretrain_classifier(tmp_path):
    from mmpretrain.structures import DataSample
    model = _load('mmpretrain', tmp_path)
    assert type(model.backbone).__module__ == 'mmvlp.models.backbones.beit3'
    samples = [DataSample().set_gt_label(i) for i in (0, 2)]
    losses = model(torch.randn(2, 3, 64, 64), samples, mode='loss')
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert model.backbone.layers[0].ffn.vision.fc1.weight.grad is not None


def test_mmseg_encoder_decoder(tmp_path):
    model = _load('mmseg', tmp_path).eval()
    metas = [dict(img_shape=(64, 64), ori_shape=(64, 64),
                  pad_shape=(64, 64))] * 2
    with torch.no_grad():
        logits = model.encode_decode(torch.randn(2, 3, 64, 64), metas)
    assert logits.shape == (2, 4, 64, 64)


def test_mmdet_rpn(tmp_path):
    from mmdet.structures import DetDataSample
    model = _load('mmdet', tmp_path).eval()
    samples = []
    for _ in range(2):
        sample = DetDataSample()
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64),
                                 scale_factor=(1., 1.), pad_shape=(64, 64)))
        samples.append(sample)
    with torch.no_grad():
        results = model.predict(torch.randn(2, 3, 64, 64), samples)
    assert len(results) == 2
    assert results[0].pred_instances.bboxes.shape[-1] == 4
    assert len(results[0].pred_instances) <= 5


def test_custom_imports_in_a_fresh_process(tmp_path):
    """Without importing mmvlp first, each toolbox's config finds
    ``mmvlp.BEiT3`` through ``custom_imports`` alone."""
    paths = {}
    for scope, text in CONFIGS.items():
        paths[scope] = tmp_path / f'{scope}.py'
        paths[scope].write_text(text)
    script = textwrap.dedent(f"""
        import importlib, sys
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        assert 'mmvlp' not in sys.modules
        for scope, path in {dict((k, str(v)) for k, v in paths.items())!r}.items():
            cfg = Config.fromfile(path)
            init_default_scope(scope)
            models = importlib.import_module(scope + '.registry').MODELS
            backbone = models.build(cfg.model).backbone
            print(scope, type(backbone).__module__, type(backbone).__name__)
        """)
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for scope in CONFIGS:
        assert f'{scope} mmvlp.models.backbones.beit3 BEiT3' in result.stdout


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_unknown_type_names_valid_choices(scope):
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    with pytest.raises(ValueError, match="Unknown BEiT3 arch 'huge'"):
        models.build(dict(type='mmvlp.BEiT3', arch='huge'))


def test_submodules_resolve_in_mmvlp_scope():
    """An mmvlp model built while another toolbox's scope is the default
    still finds its own parts (quantizer, target)."""
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = MODELS.build(dict(
        type='mmvlp.VQKD',
        encoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=1,
                               feedforward_channels=64), img_size=32),
        quantizer=dict(type='NormEMAVectorQuantizer', num_codes=8,
                       code_dims=4),
        decoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=1,
                               feedforward_channels=64)),
        target=dict(type='PixelTarget', patch_size=16)))
    assert type(model.quantizer).__name__ == 'NormEMAVectorQuantizer'
