"""Metrics, the codebook health hook and BSQ-ViT."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from mmvlp.evaluation import CodebookUsage, ReconstructionMetric, psnr, ssim
from mmvlp.models import BSQViT
from mmvlp.models.tokenizers import contrastive_loss


def test_psnr_known_value():
    target = torch.zeros(1, 3, 8, 8)
    pred = torch.full((1, 3, 8, 8), 25.5)  # mse 650.25
    assert psnr(pred, target).item() == pytest.approx(
        10 * np.log10(255**2 / 650.25))


def test_ssim_matches_scikit_image():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 32, generator=generator) * 255
    pred = (target + 30 * torch.randn(2, 3, 32, 32, generator=generator)
            ).clamp(0, 255)
    ours = ssim(pred, target)
    for index in range(2):
        reference = structural_similarity(
            pred[index].permute(1, 2, 0).double().numpy(),
            target[index].permute(1, 2, 0).double().numpy(),
            data_range=255., channel_axis=2, gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False)
        assert ours[index].item() == pytest.approx(reference, abs=1e-6)
    assert ssim(target, target).allclose(torch.ones(2, dtype=torch.double))


def test_reconstruction_metric():
    metric = ReconstructionMetric()
    image = torch.full((3, 16, 16), 100.)
    metric.process(None, [dict(recon=image + 10, image=image)])
    result = metric.compute_metrics(metric.results)
    assert result['psnr'] == pytest.approx(10 * np.log10(255**2 / 100))
    with pytest.raises(KeyError, match='needs `recon`'):
        metric.process(None, [dict(token_ids=torch.zeros(2))])


def test_codebook_usage_metric():
    metric = CodebookUsage()
    metric.process(None, [dict(token_ids=torch.tensor([[0, 1], [1, 2]]),
                               vocab_size=8)])
    result = metric.compute_metrics(metric.results)
    assert result['usage'] == pytest.approx(100 * 3 / 8)
    assert result['dead_codes'] == 5
    probs = np.array([1, 2, 1]) / 4
    assert result['perplexity'] == pytest.approx(
        np.exp(-(probs * np.log(probs)).sum()))


def _bsq(text=False, **kwargs):
    torch.manual_seed(0)
    text_encoder = dict(type='BEiT3', arch=dict(
        embed_dims=32, num_layers=1, num_heads=1, feedforward_channels=64),
        img_size=32, max_text_len=8, vocab_size=50,
        text_mask_token_id=3) if text else None
    return BSQViT(
        encoder=dict(arch=dict(embed_dims=64, num_layers=2, num_heads=1,
                               feedforward_channels=128), img_size=32,
                     patch_size=8),
        quantizer=dict(type='BinarySphericalQuantizer', code_dims=12,
                       group_size=6),
        decoder=dict(arch=dict(embed_dims=64, num_layers=1, num_heads=1,
                               feedforward_channels=128)),
        text_encoder=text_encoder, embed_dims=16, **kwargs)


def test_bsq_vit_encode_decode():
    model = _bsq().eval()
    images = torch.rand(2, 3, 32, 32) * 255
    ids = model.encode(images)
    assert ids.shape == (2, 4, 4) and ids.dtype == torch.long
    assert int(ids.max()) < model.vocab_size == 2**12
    torch.testing.assert_close(model.decode(ids), model.reconstruct(images))
    recon = model.decode(ids)
    assert recon.shape == (2, 3, 32, 32)
    assert recon.min() >= 0 and recon.max() <= 255
    predicted = model(images, mode='predict')
    assert set(predicted[0]) == {'token_ids', 'vocab_size', 'recon', 'image'}


def test_bsq_vit_losses_and_gradient_balance():
    model = _bsq(text=True).train()
    images = torch.rand(4, 3, 32, 32) * 255
    samples = [dict(text_ids=torch.randint(4, 50, (6, ))) for _ in range(4)]
    losses = model(images, samples, mode='loss')
    assert {'loss_recon', 'loss_quant', 'loss_contrastive',
            'contrastive_weight'} <= set(losses)
    # The weight is the ratio of gradient norms on the encoder's last block.
    weight = model.encoder.layers[-1].ffn.fc2.weight
    grad_recon, = torch.autograd.grad(losses['loss_recon'], weight,
                                      retain_graph=True)
    grad_con, = torch.autograd.grad(
        losses['loss_contrastive'] / losses['contrastive_weight'], weight,
        retain_graph=True)
    assert losses['contrastive_weight'].item() == pytest.approx(
        (grad_recon.norm() / grad_con.norm()).item(), rel=1e-4)
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert model.text_proj.weight.grad.abs().sum() > 0
    # Without texts only the image losses are computed.
    assert 'loss_contrastive' not in model(images, mode='loss')


def _text_batch(seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(4, 3, 32, 32, generator=generator) * 255
    samples = [dict(text_ids=torch.randint(4, 50, (6, ), generator=generator))
               for _ in range(4)]
    return images, samples


def _measured_ratios(model, calls):
    """Run ``calls`` loss calls; return the logged weights and the ratios
    measured (None where the ratio was not measured)."""
    measured, weights = [], []
    original = model._gradient_ratio

    def counting(loss_recon, loss_con):
        ratio = original(loss_recon, loss_con)
        measured[-1] = ratio.item()
        return ratio

    model._gradient_ratio = counting
    for call in range(calls):
        measured.append(None)
        losses = model(*_text_batch(call), mode='loss')
        weights.append(losses['contrastive_weight'].item())
        assert losses['loss_contrastive'].item() == pytest.approx(
            weights[-1] * losses['contrastive_raw'].item(), rel=1e-5)
    return weights, measured


def test_bsq_vit_balance_every_k_steps():
    model = _bsq(text=True, balance_interval=3).train()
    assert model.balance_weight.item() == 0  # not measured yet
    weights, measured = _measured_ratios(model, 5)
    # Two partial backward passes on steps 0 and 3 only; the stored weight
    # is used in between.
    assert [m is not None for m in measured] == [True, False, False, True,
                                                 False]
    assert weights[:3] == pytest.approx([measured[0]] * 3)
    assert weights[3:] == pytest.approx([measured[3]] * 2)
    assert 'balance_weight' in model.state_dict()
    assert model.state_dict()['balance_weight'].item() == pytest.approx(
        measured[3])


def test_bsq_vit_balance_ema():
    model = _bsq(text=True, balance_momentum=0.75).train()
    weights, measured = _measured_ratios(model, 3)
    assert all(m is not None for m in measured)
    expected = [measured[0]]
    for ratio in measured[1:]:
        expected.append(0.75 * expected[-1] + 0.25 * ratio)
    assert weights == pytest.approx(expected, rel=1e-5)


def test_bsq_vit_fixed_contrastive_weight():
    model = _bsq(text=True, balance_by_grad=False,
                 contrastive_weight=7.).train()
    weights, measured = _measured_ratios(model, 2)
    assert weights == [7., 7.] and measured == [None, None]
    assert 'balance_weight' not in model.state_dict()
    with pytest.raises(ValueError, match='balance_interval must be >= 1'):
        _bsq(text=True, balance_interval=0)
    with pytest.raises(ValueError, match=r'balance_momentum must be in'):
        _bsq(text=True, balance_momentum=1.)


def test_bsq_vit_aligned_embeddings():
    """embed_images / embed_texts are the embeddings the contrastive loss
    compares (no dropout in this model, so train and eval agree)."""
    model = _bsq(text=True, balance_by_grad=False).train()
    images, samples = _text_batch(0)
    losses = model(images, samples, mode='loss')
    ids = torch.stack([s['text_ids'] for s in samples])
    image_embeds = model.embed_images(images)
    text_embeds = model.embed_texts(ids)
    assert image_embeds.shape == text_embeds.shape == (4, 16)
    torch.testing.assert_close(image_embeds.norm(dim=-1), torch.ones(4))
    expected = contrastive_loss(image_embeds, text_embeds, model.logit_scale)
    torch.testing.assert_close(losses['contrastive_raw'], expected)
    with pytest.raises(RuntimeError, match='no text tower'):
        _bsq().embed_images(images)


def test_contrastive_loss_prefers_matching_pairs():
    embeds = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(np.log(10.))
    matched = contrastive_loss(embeds, embeds, scale)
    shuffled = contrastive_loss(embeds, embeds.roll(1, 0), scale)
    assert matched < shuffled


def test_bsq_vit_bad_config():
    with pytest.raises(ValueError, match="recon_loss must be one of"):
        BSQViT(recon_loss='l3')


def test_frechet_distance_matches_scipy():
    from scipy import linalg

    from mmvlp.evaluation import frechet_distance
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=generator, dtype=torch.double)
    b = torch.randn(200, 6, generator=generator, dtype=torch.double) * 1.5 + .3
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.t()), torch.cov(b.t())
    root = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = ((mu1 - mu2).pow(2).sum().item() + np.trace(s1.numpy()) +
                np.trace(s2.numpy()) - 2 * np.trace(root))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected,
                                                               rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)


def test_rfid_needs_inception_weights(tmp_path):
    from mmvlp.evaluation import ReconstructionFID
    with pytest.raises(FileNotFoundError, match='rFID needs Inception-v3'):
        ReconstructionFID()


def test_rfid_with_supplied_weights(tmp_path):
    """With (here random) user-supplied weights: 0 for perfect
    reconstructions, positive otherwise."""
    from torchvision.models import inception_v3

    from mmvlp.evaluation import ReconstructionFID
    torch.manual_seed(0)
    path = tmp_path / 'inception.pth'
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in
                inception_v3(weights=None, aux_logits=True,
                             init_weights=False).state_dict().items()}, path)
    metric = ReconstructionFID(inception_checkpoint=str(path))
    images = torch.rand(4, 3, 32, 32) * 255
    metric.process(None, [dict(recon=i, image=i) for i in images])
    assert metric.compute_metrics(metric.results)['rfid'] == pytest.approx(
        0, abs=1e-4)
    metric.results.clear()
    metric.process(None, [dict(recon=255 - i, image=i) for i in images])
    assert metric.compute_metrics(metric.results)['rfid'] > 0


def test_color_histogram_target():
    from mmvlp.models import ColorHistogramTarget
    target = ColorHistogramTarget(patch_size=4, bins=6)
    images = torch.zeros(1, 3, 8, 8)
    images[:, 0, :4, :4] = 250.  # top-left patch red, the rest black
    images[:, :, 4:, 4:] = 128.  # bottom-right patch grey
    out = target(images)
    assert out.shape == (1, 4, 216)
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 4))
    assert out[0, 0].argmax() == 5 * 36  # (5, 0, 0): red
    assert out[0, 1].argmax() == 0  # black
    assert out[0, 3].argmax() == (3 * 6 + 3) * 6 + 3  # grey


def test_color_histogram_target_names_the_rare_colour():
    """A patch that a small red shape covers by 1/16 on a grey background:
    plain shares call it grey, rarity weighting calls it red, and the hard
    target is the one-hot of that cell."""
    from mmvlp.models import ColorHistogramTarget
    images = torch.full((1, 3, 8, 8), 128.)
    images[:, :, 0, 0] = torch.tensor([250., 0., 0.])  # one red pixel
    red, grey = 5 * 36, (3 * 6 + 3) * 6 + 3
    plain = ColorHistogramTarget(patch_size=4, bins=6)(images)
    assert plain[0, 0].argmax() == grey
    assert plain[0, 0, red] == pytest.approx(1 / 16)
    rare = ColorHistogramTarget(patch_size=4, bins=6, rarity=True)(images)
    torch.testing.assert_close(rare.sum(-1), torch.ones(1, 4))
    # weights 1/(1/64) for red and 1/(63/64) for grey: 64 vs 15 * 64/63
    assert rare[0, 0].argmax() == red
    assert rare[0, 1].argmax() == grey  # no red pixel there
    hard = ColorHistogramTarget(patch_size=4, bins=6, rarity=True,
                                hard=True)(images)
    assert set(hard.unique().tolist()) == {0., 1.}
    assert hard[0, 0, red] == 1 and hard[0, 3, grey] == 1
