"""ViTDet-style window attention in the BEiT3 backbone."""
import pytest
import torch
import torch.nn.functional as F

from mmvlp.models import BEiT3
from mmvlp.models.layers import window_sdpa

SMALL = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


def _model(**kwargs):
    torch.manual_seed(0)
    cfg = dict(arch=SMALL, img_size=(48, 64), patch_size=8, max_text_len=16,
               vocab_size=100, text_mask_token_id=99, dynamic_img_size=True)
    cfg.update(kwargs)
    return BEiT3(**cfg).eval()


def _reference(q, k, v, grid, size):
    """Global attention with a mask that allows exactly what windows do."""
    height, width = grid
    extra = q.shape[2] - height * width
    rows = torch.arange(height).repeat_interleave(width) // size
    cols = torch.arange(width).repeat(height) // size
    window = rows * 1000 + cols
    allowed = window[:, None] == window[None, :]
    allowed = F.pad(allowed, (extra, 0, extra, 0), value=False)
    allowed[:, :extra] = True  # everyone sees the extra tokens
    allowed[:extra, :] = True  # the extra tokens see everyone
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@pytest.mark.parametrize('grid,size,extra', [
    ((6, 8), 4, 1),   # padded rows
    ((5, 7), 3, 1),   # padded rows and columns
    ((4, 4), 2, 0),   # no extra token, no padding
    ((3, 5), 8, 2),   # one padded window larger than the grid
])
def test_window_sdpa_matches_masked_global_attention(grid, size, extra):
    torch.manual_seed(0)
    num = extra + grid[0] * grid[1]
    q, k, v = (torch.randn(2, 3, num, 8) for _ in range(3))
    torch.testing.assert_close(window_sdpa(q, k, v, grid, size),
                               _reference(q, k, v, grid, size))


@pytest.mark.parametrize('window_size', [8, 11])
def test_one_window_over_the_grid_equals_global_attention(window_size):
    """A 6x8 grid in one 8x8 window (padded) or 11x11 window gives the
    global-attention outputs, for every layer and the gradients."""
    plain, windowed = _model(), _model(window_size=window_size)
    images = torch.randn(2, 3, 48, 64)
    torch.testing.assert_close(windowed(images), plain(images))
    plain.train()
    windowed.train()
    for model in (plain, windowed):
        model.forward_sequence(images=images).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), windowed.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_small_windows_change_outputs_and_global_layers_restore_them():
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        plain = _model().forward_sequence(images=images)
        windowed = _model(window_size=3).forward_sequence(images=images)
        all_global = _model(window_size=3, global_attn_indexes=(0, 1, 2, -1)
                            ).forward_sequence(images=images)
    assert windowed.shape == plain.shape
    assert not torch.allclose(windowed, plain, atol=1e-4)
    torch.testing.assert_close(all_global, plain)


def test_window_layers_and_disabled_by_default():
    model = _model(window_size=4, global_attn_indexes=(1, -1))
    assert model.global_attn_indexes == [1, 3]
    assert [layer.attn.window_size for layer in model.layers] == [4, 0, 4, 0]
    assert all(layer.attn.window_size == 0 for layer in _model().layers)


def test_text_and_pairs_attend_globally():
    plain, windowed = _model(), _model(window_size=2)
    images = torch.randn(2, 3, 48, 64)
    text = torch.randint(4, 90, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(
            windowed.forward_sequence(images=images, text_ids=text),
            plain.forward_sequence(images=images, text_ids=text))
        torch.testing.assert_close(windowed.forward_sequence(text_ids=text),
                                   plain.forward_sequence(text_ids=text))


def test_window_attention_with_checkpointing_same_grads():
    base = _model(window_size=3, global_attn_indexes=(1, ))
    cp = _model(window_size=3, global_attn_indexes=(1, ), with_cp=True)
    images = torch.randn(2, 3, 48, 64)
    for model in (base, cp):
        model.train()
        model(images)[0].square().mean().backward()
    for (name, p), q in zip(base.named_parameters(), cp.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_dynamic_sizes_with_windows():
    model = _model(window_size=3, out_type='featmap')
    for size in ((48, 64), (40, 24), (64, 64)):
        out = model(torch.randn(1, 3, *size))[0]
        assert out.shape == (1, 32, size[0] // 8, size[1] // 8)


@pytest.mark.parametrize('kwargs,message', [
    (dict(window_size=-1), 'window_size must be >= 0'),
    (dict(window_size=4, global_attn_indexes=(4, )),
     'global_attn_indexes entry 4 is outside the 4 layers'),
])
def test_bad_window_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model(**kwargs)
