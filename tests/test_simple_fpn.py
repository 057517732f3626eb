"""The simple feature pyramid neck (ViTDet) and its LN2d."""
import pytest
import torch
from mmengine.registry import init_default_scope

from mmvlp.models import BEiT3, SimpleFPN
from mmvlp.models.necks import LN2d


def _fpn(**kwargs):
    torch.manual_seed(0)
    cfg = dict(backbone_channel=32, out_channels=16, num_outs=5)
    cfg.update(kwargs)
    return SimpleFPN(**cfg).eval()


def test_vitdet_structure_and_strides():
    """Stride-16 map -> strides 4, 8, 16, 32 (+ 64 for RPN)."""
    fpn = _fpn()
    assert fpn.in_channels == [8, 16, 32, 32]
    x4 = fpn.rescales[0]
    assert [type(m).__name__ for m in x4] == [
        'ConvTranspose2d', 'LayerNorm2d', 'GELU', 'ConvTranspose2d'
    ]
    assert type(fpn.rescales[3]).__name__ == 'MaxPool2d'
    lateral = fpn.lateral_convs[0]
    assert isinstance(lateral.norm, LN2d) and lateral.conv.bias is None
    assert not lateral.with_activation
    outs = fpn((torch.randn(2, 32, 8, 8), ))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 32), (2, 16, 16, 16),
                                              (2, 16, 8, 8), (2, 16, 4, 4),
                                              (2, 16, 2, 2)]
    assert all(torch.isfinite(o).all() for o in outs)


def test_patch8_scale_factors_and_in_index():
    fpn = _fpn(scale_factors=(2, 1, 0.5, 0.25), num_outs=4, in_index=0)
    first, last = torch.randn(1, 32, 8, 8), torch.randn(1, 32, 8, 8)
    outs = fpn([first, last])
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    torch.testing.assert_close(outs[1], fpn(first)[1])


def test_with_beit3_featmap_and_gradients():
    backbone = BEiT3(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=64, patch_size=16, out_type='featmap', out_indices=(-1, ),
        final_norm=False, window_size=2, global_attn_indexes=(1, ))
    fpn = _fpn().train()
    outs = fpn(backbone(torch.randn(2, 3, 64, 64)))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    sum(o.mean() for o in outs).backward()
    assert backbone.patch_embed.proj.weight.grad is not None
    assert fpn.rescales[0][1].weight.grad is not None


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmvlp'])
def test_build_from_other_scopes(scope):
    """``type='mmvlp.SimpleFPN'`` and ``norm_cfg=dict(type='LN2d')`` resolve
    with mmdet's or mmseg's default scope (mmdet ships neither)."""
    import importlib
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    for norm in ('LN2d', 'mmvlp.LN2d', 'GN'):
        norm_cfg = dict(type=norm, requires_grad=True)
        if norm == 'GN':
            norm_cfg['num_groups'] = 4
        neck = models.build(dict(type='mmvlp.SimpleFPN', backbone_channel=32,
                                 out_channels=16, num_outs=5,
                                 norm_cfg=norm_cfg))
        assert isinstance(neck, SimpleFPN)
    # mmdet's projects/ViTDet arguments port as they are.
    neck = models.build(dict(type='mmvlp.SimpleFPN', backbone_channel=768,
                             in_channels=[192, 384, 768, 768],
                             out_channels=256, num_outs=5,
                             norm_cfg=dict(type='LN2d', requires_grad=True)))
    assert neck.in_channels == [192, 384, 768, 768]


@pytest.mark.parametrize('kwargs,message', [
    (dict(scale_factors=(3, 1)), 'scale_factors must be taken from'),
    (dict(num_outs=3), 'num_outs \\(3\\) must be at least'),
    (dict(in_channels=[32, 32, 32, 32]), 'does not match'),
    (dict(backbone_channel=30), 'divisible'),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _fpn(**kwargs)


def test_bad_input():
    with pytest.raises(ValueError, match='out_type="featmap"'):
        _fpn()((torch.randn(2, 32), ))
