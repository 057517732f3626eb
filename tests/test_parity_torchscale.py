"""Numerical parity of mmvlp's BEiT3 with the official torchscale BEiT3.

The official weights go through the converter (the same code as
``tools/model_converters/beit3_unilm_to_mmvlp.py``) and are loaded with
``mmengine.runner.load_checkpoint``; outputs must agree to 1e-4 in fp32.
"""
import torch
from mmengine.runner import load_checkpoint

from helpers.reference import BASE, TINY, build_reference, official_checkpoint
from mmvlp.models import BEiT3
from mmvlp.models.converters import convert_unilm_beit3, unwrap_checkpoint

TOL = 1e-4


def _pair(arch, img_size, tmp_path):
    reference = build_reference(arch, img_size=img_size)
    weights = unwrap_checkpoint(official_checkpoint(reference))
    state_dict, report = convert_unilm_beit3(weights, layout='decoupled')
    path = tmp_path / 'converted.pth'
    torch.save({'state_dict': state_dict}, path)
    model = BEiT3(arch=arch, img_size=img_size, max_text_len=1022).eval()
    load_checkpoint(model, str(path), strict=True, logger='silent')
    assert report.backbone_cfg()['arch']['embed_dims'] == arch['embed_dims']
    return reference, model


def _inputs(img_size, batch=2, length=9, seed=1):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, img_size, img_size, generator=generator)
    text = torch.randint(4, 64000, (batch, length), generator=generator)
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[1, length - 3:] = True  # the second text is shorter
    return images, text, padding


def _check(reference, model, img_size):
    images, text, padding = _inputs(img_size)
    with torch.no_grad():
        cases = {
            'image':
            (reference(textual_tokens=None, visual_tokens=images),
             model.forward_sequence(images=images)),
            'text+padding':
            (reference(textual_tokens=text, visual_tokens=None,
                       text_padding_position=padding),
             model.forward_sequence(text_ids=text, text_padding_mask=padding)),
            'image+text+padding':
            (reference(textual_tokens=text, visual_tokens=images,
                       text_padding_position=padding),
             model.forward_sequence(images=images, text_ids=text,
                                    text_padding_mask=padding)),
        }
    for name, (expected, got) in cases.items():
        expected = expected['encoder_out']
        assert got.shape == expected.shape, name
        diff = (got - expected).abs().max().item()
        assert diff <= TOL, f'{name}: max abs diff {diff:.2e}'


def test_parity_tiny(tmp_path):
    reference, model = _pair(TINY, 32, tmp_path)
    _check(reference, model, 32)


def test_parity_tiny_masks(tmp_path):
    """Masked patches and a prefix-causal attention mask match too."""
    reference, model = _pair(TINY, 32, tmp_path)
    images, text, padding = _inputs(32)
    vision_mask = torch.zeros(2, 4, dtype=torch.bool)
    vision_mask[:, 1] = True
    num_tokens = 5 + text.shape[1]
    causal = torch.ones(num_tokens, num_tokens).triu(1)
    causal[:, :5] = 0  # every token sees the image
    with torch.no_grad():
        expected = reference(
            textual_tokens=text, visual_tokens=images,
            vision_masked_position=vision_mask,
            attn_mask=causal)['encoder_out']
        got = model.forward_sequence(
            images=images, text_ids=text, vision_mask=vision_mask,
            attn_mask=causal.bool())
    assert (got - expected).abs().max().item() <= TOL


def test_parity_base(tmp_path):
    """The released base architecture, 224x224 images."""
    reference, model = _pair(BASE, 224, tmp_path)
    _check(reference, model, 224)


def test_gradient_parity_tiny(tmp_path):
    """A training step's gradients match too (image, image+text with
    padding): for the images, the text table, the CLS token and the patch
    projection, which every layer's backward feeds."""
    reference, model = _pair(TINY, 32, tmp_path)
    reference.train()
    model.train()
    images, text, padding = _inputs(32)
    pairs = [('text_embed.weight', 'text_embed.weight'),
             ('vision_embed.cls_token', 'cls_token'),
             ('vision_embed.proj.weight', 'patch_embed.proj.weight')]
    for with_text in (False, True):
        grads = []
        for run in (
                lambda x: reference(
                    textual_tokens=text if with_text else None,
                    visual_tokens=x,
                    text_padding_position=padding if with_text else None)[
                        'encoder_out'],
                lambda x: model.forward_sequence(
                    images=x, text_ids=text if with_text else None,
                    text_padding_mask=padding if with_text else None)):
            x = images.clone().requires_grad_()
            run(x).square().mean().backward()
            grads.append(x.grad)
        params = dict(reference.named_parameters()), dict(
            model.named_parameters())
        for ref_name, name in pairs:
            expected, got = params[0][ref_name].grad, params[1][name].grad
            if expected is None:  # the text table without text
                assert got is None or not got.any(), name
                continue
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6,
                                       msg=name)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)
        reference.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
