"""Behaviour of the BEiT3 backbone beyond parity (see test_parity_torchscale)."""
import math

import pytest
import torch

from mmvlp.models import BEiT3
from mmvlp.models.layers import MultiwayExperts, MultiwayTransformerLayer

SMALL = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


def _model(**kwargs):
    torch.manual_seed(0)
    cfg = dict(arch=SMALL, img_size=32, max_text_len=16, vocab_size=100,
               text_mask_token_id=99)
    cfg.update(kwargs)
    return BEiT3(**cfg).eval()


def _text(batch=2, length=6):
    return torch.randint(4, 90, (batch, length),
                         generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize('arch,dims,layers,heads,ffn,patch', [
    ('base', 768, 12, 12, 3072, 16),
    ('large', 1024, 24, 16, 4096, 16),
    ('giant', 1408, 40, 16, 6144, 14),
])
def test_arch_settings(arch, dims, layers, heads, ffn, patch):
    with torch.device('meta'):
        model = BEiT3(arch=arch)
    assert (model.embed_dims, model.num_layers, model.num_heads,
            model.feedforward_channels, model.patch_size) == (dims, layers,
                                                              heads, ffn,
                                                              patch)
    assert model.pos_embed_vision.shape[1] == 1 + (224 // patch)**2


def test_decoupled_base_parameter_count():
    """Official BEiT-3 base has 222M parameters (text table 64010 rows)."""
    with torch.device('meta'):
        model = BEiT3(arch='base', max_text_len=1022)
    count = sum(p.numel() for p in model.parameters())
    assert 220e6 < count < 223e6


@pytest.mark.parametrize('out_type,shape', [
    ('raw', (2, 5, 32)),
    ('cls_token', (2, 32)),
    ('featmap', (2, 32, 2, 2)),
    ('avg_featmap', (2, 32)),
])
def test_vision_forward_out_types(out_type, shape):
    model = _model(out_type=out_type, out_indices=(1, -1))
    images = torch.randn(2, 3, 32, 32)
    outs = model(images)
    assert len(outs) == 2 and all(o.shape == shape for o in outs)
    # The last output is the normalised final state of forward_sequence.
    final = model.forward_sequence(images=images)
    expected = {'raw': final, 'cls_token': final[:, 0],
                'avg_featmap': final[:, 1:].mean(1),
                'featmap': final[:, 1:].reshape(2, 2, 2, 32).permute(0, 3, 1, 2)}
    torch.testing.assert_close(outs[1], expected[out_type])


def test_sequence_shapes_and_split():
    model = _model()
    images, text = torch.randn(2, 3, 32, 32), _text()
    output, _ = model.encode(images=images, text_ids=text)
    assert output.hidden_states.shape == (2, 5 + 6, 32)
    assert output.num_image_tokens == 5
    assert model.forward_sequence(text_ids=text).shape == (2, 6, 32)


def test_padding_does_not_change_real_tokens():
    """A padded text gives the same outputs at its real tokens as unpadded."""
    model = _model()
    images, text = torch.randn(1, 3, 32, 32), _text(1, 4)
    padded = torch.cat([text, torch.ones(1, 3, dtype=torch.long)], dim=1)
    padding = torch.zeros(1, 7, dtype=torch.bool)
    padding[:, 4:] = True
    with torch.no_grad():
        short = model.forward_sequence(images=images, text_ids=text)
        long = model.forward_sequence(images=images, text_ids=padded,
                                      text_padding_mask=padding)
    torch.testing.assert_close(long[:, :5 + 4], short, atol=1e-5, rtol=1e-5)


def test_text_mask_is_the_mask_token_embedding():
    model = _model()
    text = _text()
    mask = torch.zeros_like(text, dtype=torch.bool)
    mask[:, 2] = True
    replaced = text.masked_fill(mask, model.text_mask_token_id)
    torch.testing.assert_close(
        model.forward_sequence(text_ids=text, text_mask=mask),
        model.forward_sequence(text_ids=replaced))


def test_vision_mask_uses_mask_token():
    model = _model()
    images = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[:, 0, 1] = True
    with torch.no_grad():
        masked = model.forward_sequence(images=images, vision_mask=mask)
        plain = model.forward_sequence(images=images)
        model.mask_token.zero_()
        images_zeroed = images.clone()
        images_zeroed[:, :, :16, 16:] = 0  # patch (0, 1) -> conv bias only
    assert not torch.allclose(masked, plain)
    # With a zero mask token, masking equals a patch whose projection is 0:
    # i.e. the embedding no longer depends on the masked pixels.
    images_changed = images.clone()
    images_changed[:, :, :16, 16:] = 5.
    with torch.no_grad():
        a = model.forward_sequence(images=images, vision_mask=mask)
        b = model.forward_sequence(images=images_changed, vision_mask=mask)
    torch.testing.assert_close(a, b)


def test_attn_mask_blocks_future_text():
    """With a prefix-causal mask, changing a later text token leaves earlier
    positions unchanged."""
    model = _model()
    images, text = torch.randn(1, 3, 32, 32), _text(1, 6)
    total = 5 + 6
    blocked = torch.ones(total, total, dtype=torch.bool).triu(1)
    blocked[:, :5] = False  # everyone sees the image
    blocked[:5, 5:] = True  # the image does not see the text
    changed = text.clone()
    changed[0, 4] = 7
    with torch.no_grad():
        a = model.forward_sequence(images=images, text_ids=text,
                                   attn_mask=blocked)
        b = model.forward_sequence(images=images, text_ids=changed,
                                   attn_mask=blocked)
    torch.testing.assert_close(a[:, :5 + 4], b[:, :5 + 4])
    assert not torch.allclose(a[:, 5 + 4:], b[:, 5 + 4:])


def test_shared_layout_structure_and_vl_routing():
    model = _model(layout='shared', num_vl_layers=2)
    layer = model.layers[0]
    assert isinstance(layer.attn.qkv, torch.nn.Linear)  # shared attention
    assert isinstance(layer.ffn, MultiwayExperts) and not layer.ffn.has_vl
    assert all(model.layers[i].ffn.has_vl for i in (2, 3))
    images, text = torch.randn(2, 3, 32, 32), _text()
    with torch.no_grad():
        pair = model.forward_sequence(images=images, text_ids=text)
        image_only = model.forward_sequence(images=images)
        for i in (2, 3):  # the VL experts only matter for pairs
            model.layers[i].ffn.vl.fc2.weight.mul_(3.)
        assert not torch.allclose(
            model.forward_sequence(images=images, text_ids=text), pair)
        torch.testing.assert_close(model.forward_sequence(images=images),
                                   image_only)


def test_decoupled_has_no_vl_by_default():
    model = _model()
    assert model.num_vl_layers == 0
    assert all(isinstance(layer.attn.qkv, MultiwayExperts)
               for layer in model.layers)


def test_subln_init_gain():
    model = _model()
    gain = math.sqrt(math.log(2 * 4))
    qkv = model.layers[0].attn.qkv.vision.weight
    std_qk, std_v = qkv[:64].std().item(), qkv[64:].std().item()
    assert std_v / std_qk == pytest.approx(gain, rel=0.15)
    assert model.layers[0].ffn.vision.fc1.weight.std().item() == \
        pytest.approx(0.02 * gain, rel=0.15)
    plain = _model(subln=False)
    assert plain.layers[0].ffn.vision.norm is None
    assert plain.layers[0].attn.inner_norm is None


def test_routing_is_not_module_state():
    """Calls with different modalities do not leak into each other."""
    model = _model()
    images, text = torch.randn(2, 3, 32, 32), _text()
    with torch.no_grad():
        first = model.forward_sequence(images=images)
        model.forward_sequence(text_ids=text)
        model.forward_sequence(images=images, text_ids=text)
        again = model.forward_sequence(images=images)
    torch.testing.assert_close(first, again)


def test_activation_checkpointing_same_grads_and_recomputes():
    base, cp = _model(), _model(with_cp=True)
    base.train()
    cp.train()
    images, text = torch.randn(2, 3, 32, 32), _text()
    calls = []
    forward = cp.layers[0].forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    cp.layers[0].forward = counted
    for model in (base, cp):
        model.forward_sequence(images=images, text_ids=text).square().mean(
        ).backward()
    assert len(calls) == 2  # forward + recomputation in backward
    for (name, p), q in zip(base.named_parameters(), cp.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_drop_path_only_in_training():
    model = _model(drop_path_rate=0.5)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.forward_sequence(images=images),
                           model.forward_sequence(images=images))
        model.train()
        torch.manual_seed(1)
        a = model.forward_sequence(images=images)
        torch.manual_seed(2)
        b = model.forward_sequence(images=images)
    assert not torch.allclose(a, b)


def test_drop_path_drops_image_and_text_of_a_sample_together():
    """An image+text sequence is processed per modality; stochastic depth
    still keeps or drops a sample's whole residual branch."""
    torch.manual_seed(0)
    layer = MultiwayTransformerLayer(32, 2, 64, drop_path_rate=0.5).train()
    x = torch.randn(64, 6, 32)
    with torch.no_grad():
        unchanged = (layer(x, 4) - x).abs().amax(-1) == 0  # both dropped
    image, text = unchanged[:, :4].all(1), unchanged[:, 4:].all(1)
    assert torch.equal(image, text)
    assert 0 < int(image.sum()) < 64


def test_pos_embed_resized_at_load_and_on_demand():
    small = _model()
    big = _model(img_size=64)
    big.load_state_dict(small.state_dict())
    assert big.pos_embed_vision.shape == (1, 1 + 16, 32)
    torch.testing.assert_close(big.pos_embed_vision[:, 0],
                               small.pos_embed_vision[:, 0])
    # Resizing the same table on demand gives the same result.
    small.resize_pos_embed(64)
    torch.testing.assert_close(small.pos_embed_vision, big.pos_embed_vision)
    assert small(torch.randn(1, 3, 64, 64))[0].shape == (1, 32)
    # A longer text table is truncated to max_text_len.
    long_text = _model(max_text_len=20).state_dict()
    short = _model()
    short.load_state_dict(long_text)
    torch.testing.assert_close(short.pos_embed_text,
                               long_text['pos_embed_text'][:, :16])


def test_dynamic_img_size():
    model = _model(dynamic_img_size=True, out_type='featmap')
    assert model(torch.randn(1, 3, 48, 64))[0].shape == (1, 32, 3, 4)


def test_get_layer_depth():
    model = _model()
    assert model.get_layer_depth('backbone.cls_token', 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.text_embed.weight',
                                 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.layers.2.ffn.text.fc1.weight',
                                 'backbone.') == (3, 6)
    assert model.get_layer_depth('backbone.norm.vision.weight',
                                 'backbone.') == (5, 6)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (5, 6)


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='huge'), "choose one of \\['base', 'giant', 'large', 'tiny'\\]"),
    (dict(arch=dict(embed_dims=8)), 'missing'),
    (dict(layout='mixed'), "'decoupled', 'shared'"),
    (dict(out_type='tokens'), "'raw', 'cls_token'"),
    (dict(img_size=30), 'not divisible by patch_size 16'),
    (dict(out_indices=(7, )), 'outside the 4 layers'),
    (dict(num_vl_layers=9), 'num_vl_layers'),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model(**kwargs)


def test_bad_inputs():
    model = _model()
    with pytest.raises(ValueError, match='needs images, text_ids or both'):
        model.forward_sequence()
    with pytest.raises(ValueError, match='built for img_size=\\(32, 32\\)'):
        model.forward_sequence(images=torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='longer than max_text_len=16'):
        model.forward_sequence(text_ids=torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match='text_padding_mask must have'):
        model.forward_sequence(text_ids=_text(),
                               text_padding_mask=torch.zeros(2, 3).bool())
    with pytest.raises(ValueError, match='different batch sizes'):
        model.forward_sequence(images=torch.randn(1, 3, 32, 32),
                               text_ids=_text(2))


def test_sincos_pos_embed_init():
    """``pos_embed_init='sincos'`` starts the image table from 2-D
    sine-cosine codes in row-major patch order (neighbours along rows and
    columns equally alike); the CLS row and the default stay truncated
    normal; unknown names are refused."""
    model = _model(img_size=(48, 32), patch_size=8, pos_embed_init='sincos')
    table = model.pos_embed_vision[0, 1:]  # 6 rows x 4 columns
    assert table.shape == (24, 32)
    assert table.abs().max() <= 1 and table.std() > 0.3
    cos = torch.nn.functional.cosine_similarity
    right, below, far = (cos(table[0], table[i], dim=0) for i in (1, 4, 23))
    torch.testing.assert_close(right, below)
    assert right > far
    assert model.pos_embed_vision[0, 0].std() < 0.1
    assert _model().pos_embed_vision.std() < 0.05
    with pytest.raises(ValueError, match='pos_embed_init'):
        _model(pos_embed_init='rope')
