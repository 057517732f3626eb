"""QLIP stage 2: frozen encoder, perceptual + adversarial decoder training."""
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapperDict

from mmvlp.engine import MultiOptimWrapperConstructor
from mmvlp.models import BSQViT, PerceptualLoss


def _model(vgg_checkpoint, **kwargs):
    torch.manual_seed(0)
    cfg = dict(
        encoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=1,
                               feedforward_channels=64), img_size=32,
                     patch_size=8),
        quantizer=dict(type='BinarySphericalQuantizer', code_dims=8,
                       group_size=4),
        decoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=1,
                               feedforward_channels=64)),
        stage=2,
        perceptual_loss=dict(type='PerceptualLoss',
                             vgg_checkpoint=vgg_checkpoint),
        discriminator=dict(type='PatchDiscriminator', base_channels=8,
                           num_layers=2))
    cfg.update(kwargs)
    return BSQViT(**cfg)


def test_perceptual_loss_needs_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match='needs VGG-16 weights'):
        PerceptualLoss()
    with pytest.raises(FileNotFoundError, match='Refusing to train'):
        PerceptualLoss(vgg_checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(ValueError, match='stage 2 needs perceptual_loss'):
        BSQViT(stage=2)


def _perceptual_by_hand(vgg_checkpoint, pred, target):
    """torchvision's VGG-16 with the given weights; at relu1_2, relu2_2,
    relu3_3, relu4_3 and relu5_3 the features are divided by their norm
    over channels and the squared differences averaged over channels and
    positions; the layers summed (LPIPS without its linear calibration)."""
    from torchvision.models import vgg16
    network = vgg16(weights=None).features.eval()
    state = torch.load(vgg_checkpoint, weights_only=True)
    network.load_state_dict({k[len('features.'):]: v.float()
                             for k, v in state.items()})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    total = 0.
    x, y = (pred / 255. - mean) / std, (target / 255. - mean) / std
    for index, layer in enumerate(network):
        x, y = layer(x), layer(y)
        if index in (3, 8, 15, 22, 29):
            unit_x = x / x.pow(2).sum(1, keepdim=True).sqrt()
            unit_y = y / y.pow(2).sum(1, keepdim=True).sqrt()
            total = total + (unit_x - unit_y).pow(2).mean()
    return total


def test_perceptual_loss_values(vgg_checkpoint):
    loss = PerceptualLoss(vgg_checkpoint=vgg_checkpoint)
    images = torch.rand(2, 3, 32, 32) * 255
    assert loss(images, images).item() == pytest.approx(0., abs=1e-7)
    noisy = (images + 40 * torch.randn_like(images)).clamp(0, 255)
    with torch.no_grad():
        expected = _perceptual_by_hand(vgg_checkpoint, noisy, images)
        torch.testing.assert_close(loss(noisy, images), expected)
    assert expected > 0
    assert not any(p.requires_grad for p in loss.features.parameters())
    assert not loss.state_dict()  # the user's VGG weights are not saved


def test_stage2_step_trains_decoder_not_encoder(vgg_checkpoint):
    model = _model(vgg_checkpoint).train()
    assert not model.encoder.training
    optim = MultiOptimWrapperConstructor(dict(
        generator=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        discriminator=dict(optimizer=dict(type='AdamW', lr=1e-3))))(model)
    assert isinstance(optim, OptimWrapperDict)
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoder = model.decoder.layers[0].ffn.fc1.weight.clone()
    disc = model.discriminator.layers[0].weight.clone()
    MessageHub.get_current_instance().update_info('iter', 0)
    data = dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                        for _ in range(2)])
    log = model.train_step(data, optim)
    assert {'loss_recon', 'loss_perceptual', 'loss_adversarial',
            'adversarial_weight', 'loss_disc'} <= set(log)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder[key]), key
    assert not torch.equal(decoder, model.decoder.layers[0].ffn.fc1.weight)
    assert not torch.equal(disc, model.discriminator.layers[0].weight)


def test_stage2_discriminator_waits_for_start(vgg_checkpoint):
    model = _model(vgg_checkpoint, disc_start_iter=5).train()
    optim = MultiOptimWrapperConstructor(dict(
        generator=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        discriminator=dict(optimizer=dict(type='AdamW', lr=1e-3))))(model)
    disc = model.discriminator.layers[0].weight.clone()
    MessageHub.get_current_instance().update_info('iter', 2)
    data = dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                        for _ in range(2)])
    log = model.train_step(data, optim)
    assert 'loss_disc' not in log and 'loss_adversarial' not in log
    assert torch.equal(disc, model.discriminator.layers[0].weight)


def test_multi_optim_constructor_checks_parts(vgg_checkpoint):
    model = _model(vgg_checkpoint)
    with pytest.raises(ValueError, match='do not match the model parts'):
        MultiOptimWrapperConstructor(dict(
            generator=dict(optimizer=dict(type='AdamW', lr=1e-3))))(model)


def test_stage2_hinge_losses_by_hand(vgg_checkpoint):
    """The PatchGAN hinge losses of a stage-2 step: the discriminator's
    ``(mean relu(1 - D(real)) + mean relu(1 + D(fake))) / 2`` and the
    generator's ``-mean D(fake)`` (times its logged adaptive weight), with
    images and reconstructions scaled to [-1, 1] and the networks as they
    were before the step."""
    import copy
    model = _model(vgg_checkpoint).train()
    optim = MultiOptimWrapperConstructor(dict(
        generator=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        discriminator=dict(optimizer=dict(type='AdamW', lr=1e-3))))(model)
    before = copy.deepcopy(model)
    MessageHub.get_current_instance().update_info('iter', 0)
    data = dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                        for _ in range(2)])
    log = model.train_step(data, optim)
    with torch.no_grad():
        images = before.data_preprocessor(data, True)['inputs'].float()
        _, recon = before._stage2_losses(images, apply_adversarial=False)
        real = before.discriminator(images / 127.5 - 1)
        fake = before.discriminator(recon / 127.5 - 1)
    assert real.shape == (2, 1, 6, 6)  # one logit per patch
    loss_disc = (torch.clamp(1 - real, min=0).mean() +
                 torch.clamp(1 + fake, min=0).mean()) / 2
    torch.testing.assert_close(log['loss_disc'], loss_disc)
    torch.testing.assert_close(log['loss_adversarial'],
                               log['adversarial_weight'] * -fake.mean())
