"""The EVA/QLIP options of the shared layers: 2-D rotary embeddings,
SwiGLU and the activations of the FFN, CLS-only final norm and token inputs
of the plain ViT."""
import pytest
import torch
import torch.nn.functional as F
from helpers.qlip_reference import Rope, rope_table

from mmvlp.models.backbones import ViTEncoder
from mmvlp.models.layers import SubLNFFN, apply_rope, rope_2d_tables

ARCH = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=24)


@pytest.mark.parametrize('grid,head_dims', [(5, 12), (4, 8), (7, 4)])
def test_rope_tables_match_the_official_layout(grid, head_dims):
    cos, sin = rope_2d_tables((grid, grid), head_dims)
    ref_cos, ref_sin = rope_table(grid, head_dims // 2)
    torch.testing.assert_close(cos, ref_cos, atol=1e-5, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=1e-5, rtol=0)
    x = torch.randn(2, 3, 1 + grid * grid, head_dims)
    out = apply_rope(x, (cos, sin))
    assert torch.equal(out[:, :, :1], x[:, :, :1])  # CLS untouched
    torch.testing.assert_close(out[:, :, 1:], Rope(grid, head_dims // 2)(
        x[:, :, 1:]))
    # A rotation: norms kept, and q.k depends on the offset only.
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


def test_rope_is_relative():
    cos, sin = rope_2d_tables((6, 6), 8)
    q, k = torch.randn(8), torch.randn(8)

    def score(i, j):
        qi = apply_rope(q.expand(1, 1, 36, 8), (cos, sin))[0, 0, i]
        kj = apply_rope(k.expand(1, 1, 36, 8), (cos, sin))[0, 0, j]
        return qi @ kj

    # (row 0, col 1) vs (row 2, col 3) and (row 3, col 2) vs (row 5, col 4).
    torch.testing.assert_close(score(0 * 6 + 1, 2 * 6 + 3),
                               score(3 * 6 + 2, 5 * 6 + 4))


def test_rope_needs_head_width_divisible_by_4():
    with pytest.raises(ValueError, match='divisible by 4'):
        rope_2d_tables((4, 4), 6)
    with pytest.raises(ValueError, match='divisible by 4'):
        ViTEncoder(dict(ARCH, num_heads=8), img_size=16, patch_size=4,
                   rope=True)


def test_ffn_activations():
    torch.manual_seed(0)
    x = torch.randn(3, 8)
    ffn = SubLNFFN(8, 6, subln=False, act='swiglu')
    assert ffn.fc1.out_features == 12
    gate, value = ffn.fc1(x).chunk(2, -1)
    torch.testing.assert_close(ffn(x), ffn.fc2(F.silu(gate) * value))
    ffn = SubLNFFN(8, 6, subln=False, act='quick_gelu')
    h = ffn.fc1(x)
    torch.testing.assert_close(ffn(x), ffn.fc2(h * torch.sigmoid(1.702 * h)))
    with pytest.raises(ValueError, match='act must be one of'):
        SubLNFFN(8, 6, act='relu6')


def test_vit_options():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 16, 16)
    vit = ViTEncoder(ARCH, img_size=16, patch_size=4, final_norm='cls',
                     rope=True, subln=True, ffn_act='swiglu').eval()
    plain = ViTEncoder(ARCH, img_size=16, patch_size=4, final_norm=False,
                       rope=True, subln=True, ffn_act='swiglu').eval()
    plain.load_state_dict(vit.state_dict(), strict=False)
    out, grid = vit(images)
    ref, _ = plain(images)
    assert grid == (4, 4)
    torch.testing.assert_close(out[:, 1:], ref[:, 1:])  # patches unnormed
    torch.testing.assert_close(out[:, 0], vit.norm(ref[:, 0]))
    # Other input sizes get their own rotary tables.
    assert vit(torch.randn(1, 3, 24, 20))[1] == (6, 5)
    # The rotary embedding changes the result.
    no_rope = ViTEncoder(ARCH, img_size=16, patch_size=4, final_norm='cls',
                         subln=True, ffn_act='swiglu').eval()
    no_rope.load_state_dict(vit.state_dict())
    assert not torch.allclose(no_rope(images)[0], out)
    # A decoder fed with tokens: no patch projection.
    decoder = ViTEncoder(ARCH, img_size=4, patch_size=1, in_channels=16,
                         with_cls_token=False, embed_input=False)
    assert decoder.patch_embed is None
    assert decoder(torch.randn(2, 16, 4, 4))[0].shape == (2, 16, 16)
    with pytest.raises(ValueError, match='embed_input=False'):
        ViTEncoder(ARCH, img_size=4, patch_size=2, in_channels=16,
                   embed_input=False)
    with pytest.raises(ValueError, match='final_norm'):
        ViTEncoder(ARCH, img_size=4, patch_size=1, final_norm='patches')
