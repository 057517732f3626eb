"""BEiT3Pretrain: masked data modeling losses on the three sources."""
import pytest
import torch

from mmvlp.models import BEiT3Pretrain

BACKBONE = dict(type='BEiT3', arch=dict(embed_dims=32, num_layers=2,
                                        num_heads=2, feedforward_channels=64),
                img_size=32, patch_size=16, vocab_size=50, max_text_len=12,
                text_mask_token_id=49)
TOKENIZER = dict(
    type='VQKD',
    encoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=1,
                           feedforward_channels=64), img_size=32,
                 patch_size=16),
    quantizer=dict(type='NormEMAVectorQuantizer', num_codes=16, code_dims=4,
                   kmeans_init=False),
    decoder=None)


def _batch(seed=0, batch=4, length=10):
    generator = torch.Generator().manual_seed(seed)
    vision_mask = torch.zeros(batch, 2, 2, dtype=torch.bool)
    vision_mask[:, 0] = True
    text_ids = torch.randint(4, 48, (batch, length), generator=generator)
    mlm = torch.zeros(batch, length, dtype=torch.bool)
    mlm[:, 2:5] = True
    masked = text_ids.masked_fill(mlm, 49)
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[0, -2:] = True
    images = torch.randn(batch, 3, 32, 32, generator=generator)
    raw = torch.rand(batch, 3, 32, 32, generator=generator) * 255
    image = dict(images=images, vision_mask=vision_mask,
                 tokenizer_images=raw)
    text = dict(masked_text_ids=masked, text_ids=text_ids, text_mlm_mask=mlm,
                text_padding_mask=padding)
    return dict(image=image, text=text, pair={**image, **text})


def _model(**kwargs):
    torch.manual_seed(0)
    cfg = dict(backbone=BACKBONE, tokenizer=TOKENIZER)
    cfg.update(kwargs)
    return BEiT3Pretrain(**cfg)


def test_losses_match_a_manual_computation():
    model = _model().eval()
    batch = _batch()
    losses = model(batch)
    assert set(losses) == {
        'loss_mim_image', 'acc_mim_image', 'loss_mlm_text', 'acc_mlm_text',
        'loss_mim_pair', 'acc_mim_pair', 'loss_mlm_pair', 'acc_mlm_pair'}
    # MIM on images: cross-entropy of the head at masked patches against the
    # frozen tokenizer's ids of the tokenizer view.
    part = batch['image']
    targets = model.tokenizer.encode(part['tokenizer_images']).flatten(1)
    hidden = model.backbone.forward_sequence(
        images=part['images'], vision_mask=part['vision_mask'])[:, 1:]
    mask = part['vision_mask'].flatten(1)
    expected = torch.nn.functional.cross_entropy(
        model.mim_head(hidden[mask]), targets[mask])
    torch.testing.assert_close(losses['loss_mim_image'], expected)
    # MLM on pairs reads the text part of the sequence only.
    pair = batch['pair']
    hidden = model.backbone.forward_sequence(
        images=pair['images'], vision_mask=pair['vision_mask'],
        text_ids=pair['masked_text_ids'],
        text_padding_mask=pair['text_padding_mask'])[:, 5:]
    expected = torch.nn.functional.cross_entropy(
        model.mlm_head(hidden[pair['text_mlm_mask']]),
        pair['text_ids'][pair['text_mlm_mask']])
    torch.testing.assert_close(losses['loss_mlm_pair'], expected)


def test_training_reduces_losses_and_keeps_tokenizer_frozen():
    model = _model().train()
    assert not model.tokenizer.training
    tokenizer_state = {k: v.clone()
                       for k, v in model.tokenizer.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(not p.requires_grad for p in model.tokenizer.parameters())
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    batch = _batch()
    first = None
    for _ in range(40):
        losses = model(batch)
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        first = first if first is not None else total.item()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert total.item() < 0.5 * first
    for key, value in model.tokenizer.state_dict().items():
        assert torch.equal(value, tokenizer_state[key]), key


def test_precomputed_tokens_and_config_errors():
    model = _model(tokenizer=None, visual_vocab_size=16)
    batch = _batch()
    batch['image']['visual_tokens'] = torch.randint(0, 16, (4, 2, 2))
    losses = model(dict(image=batch['image']))
    assert set(losses) == {'loss_mim_image', 'acc_mim_image'}
    batch['image']['visual_tokens'][0, 0, 0] = 16
    with pytest.raises(ValueError, match='Target ids must be in \\[0, 16\\)'):
        model(dict(image=batch['image']))
    with pytest.raises(ValueError, match='needs a tokenizer or'):
        _model(tokenizer=None)
    with pytest.raises(ValueError, match='does not match'):
        _model(visual_vocab_size=32)
    bad_grid = dict(TOKENIZER, encoder=dict(TOKENIZER['encoder'],
                                            img_size=64))
    with pytest.raises(ValueError, match='4x4 token map'):
        _model(tokenizer=bad_grid)
    with pytest.raises(ValueError, match='at least one of'):
        model({})
    with pytest.raises(ValueError, match='compile_tokenizer=True needs'):
        _model(tokenizer=None, visual_vocab_size=16, compile_tokenizer=True)


def test_compiled_tokenizer_gives_the_same_training_losses():
    batch = _batch()
    plain = _model()(batch)
    model = _model(compile_tokenizer=True)
    losses = model(batch)  # the training step itself stays eager
    assert model.tokenizer.compiled_encoder.compiled is not None
    assert model.tokenizer.compiled_encoder.disabled_because is None
    for key, value in plain.items():
        torch.testing.assert_close(losses[key], value, msg=key)


def test_loss_weights_default_to_one_per_source():
    """Overriding one source's weight (``--cfg-options
    model.loss_weights.pair=2``) keeps the others at 1."""
    batch = _batch()
    plain = _model()(batch)
    weighted = _model(loss_weights=dict(pair=2.))
    assert weighted.loss_weights == dict(image=1., text=1., pair=2.)
    losses = weighted(batch)
    torch.testing.assert_close(losses['loss_mim_image'],
                               plain['loss_mim_image'])
    torch.testing.assert_close(losses['loss_mlm_pair'],
                               2 * plain['loss_mlm_pair'])
    with pytest.raises(ValueError, match='loss_weights keys'):
        _model(loss_weights=dict(pairs=2.))
