"""VQKD: token parity with mmpretrain 1.2.0, official-format conversion,
training losses and input checks."""
import math

import numpy as np
import pytest
import torch

from mmvlp.models import VQKD
from mmvlp.models.converters import convert_vqkd
from mmvlp.testing import mmpretrain_vqkd

# 64-channel heads, as every released ViT (the converters read the head count
# as embed_dims // 64: it is not stored in the weights).
ENCODER = dict(embed_dims=128, num_layers=2, num_heads=2,
               feedforward_channels=256)
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def _mmpretrain_vqkd(seed=0, num_codes=512):
    return mmpretrain_vqkd(ENCODER, img_size=64, num_codes=num_codes,
                           code_dims=16, seed=seed)


def _images(batch=8, size=64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 255


def test_token_parity_with_mmpretrain():
    reference = _mmpretrain_vqkd()
    state, info = convert_vqkd(reference.state_dict())
    assert info.source == 'mmpretrain'
    cfg = dict(info.model_cfg)
    cfg.pop('type')
    model = VQKD(**cfg).eval()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    images = _images(batch=16)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((images - mean) / std)
    got = model.encode(images)
    assert got.shape == (16, 4, 4)
    agreement = (got.flatten(1) == expected).float().mean().item()
    assert agreement >= 0.999, agreement
    assert expected.unique().numel() > 20  # a meaningful comparison


def _unilm_weights(reference):
    """The mmpretrain weights renamed into unilm beit2's key layout, plus a
    decoder, the scaling layer and a teacher, as the released files have."""
    rename = [('patch_embed.projection.', 'patch_embed.proj.'),
              ('.ln1.', '.norm1.'), ('.ln2.', '.norm2.'),
              ('.ffn.layers.0.0.', '.mlp.fc1.'), ('.ffn.layers.1.',
                                                  '.mlp.fc2.')]
    weights = {}
    for key, value in reference.state_dict().items():
        key = key.replace('encoder.ln1.', 'encoder.norm.')  # final norm
        key = key.replace('encoder.layers.', 'encoder.blocks.')
        for src, dst in rename:
            key = key.replace(src, dst)
        weights[key] = value
    decoder = {k.replace('encoder.', 'decoder.'): torch.randn_like(v)
               for k, v in weights.items()
               if k.startswith('encoder.blocks.0.') or
               k.startswith('encoder.norm.') or k == 'encoder.cls_token'}
    decoder['decoder.patch_embed.proj.weight'] = torch.randn(128, 16, 1, 1)
    decoder['decoder.patch_embed.proj.bias'] = torch.randn(128)
    decoder['decoder.pos_embed'] = torch.randn(1, 17, 128)
    weights.update(decoder)
    weights.update({
        'decode_task_layer.0.weight': torch.randn(128, 128),
        'decode_task_layer.0.bias': torch.randn(128),
        'decode_task_layer.2.weight': torch.randn(40, 128),
        'decode_task_layer.2.bias': torch.randn(40),
        'scaling_layer.shift': torch.tensor([0.48145466, 0.4578275,
                                             0.40821073]).view(1, 3, 1, 1),
        'scaling_layer.scale': torch.tensor([0.26862954, 0.26130258,
                                             0.27577711]).view(1, 3, 1, 1),
        'teacher_model.visual.proj': torch.randn(4, 4),
    })
    return weights


def test_official_format_converts_and_loads(tmp_path):
    reference = _mmpretrain_vqkd()
    state, info = convert_vqkd(_unilm_weights(reference))
    assert info.source == 'unilm'
    assert 'teacher_model.visual.proj' in info.ignored
    cfg = dict(info.model_cfg)
    cfg.pop('type')
    assert cfg['target_dims'] == 40 and cfg['decoder']['arch'][
        'num_layers'] == 1
    assert cfg['mean'][0] == pytest.approx(0.48145466 * 255)
    model = VQKD(**cfg)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ids = model.encode(_images(2))
    assert model.decode(ids).shape == (2, 16, 40)


def test_conversion_refuses_foreign_and_unknown_keys():
    with pytest.raises(ValueError, match='Not a VQ-KD checkpoint'):
        convert_vqkd({'backbone.conv1.weight': torch.zeros(1)})
    weights = _mmpretrain_vqkd().state_dict()
    weights['encoder.layers.0.gamma_1'] = torch.ones(128)
    with pytest.raises(ValueError, match='gamma_1'):
        convert_vqkd(weights)


def _tiny_vqkd(target=None):
    torch.manual_seed(0)
    return VQKD(
        encoder=dict(arch=ENCODER, img_size=64, patch_size=16),
        quantizer=dict(type='NormEMAVectorQuantizer', num_codes=32,
                       code_dims=8),
        decoder=dict(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                               feedforward_channels=64)),
        target=target or dict(type='HOGTarget', patch_size=16))


def test_training_step_losses_and_gradients():
    model = _tiny_vqkd().train()
    images = _images(4)
    losses = model(images, mode='loss')
    assert set(losses) >= {'loss_rec', 'loss_quant', 'perplexity'}
    (losses['loss_rec'] + losses['loss_quant']).backward()
    assert model.encoder.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.quantizer.initted  # k-means ran on the first batch
    # The values by hand (eval: the codebook stays as it is): 1 - cosine of
    # the decoded codes and the HOG target per patch, and beta times the
    # mean squared distance of the l2-normalised features to their codes.
    model.eval()
    with torch.no_grad():
        losses = model.loss(images)
        ids = model.encode(images)
        decoded = model.decode(ids)
        target = model.target(images)
        cosine = (decoded * target).sum(-1) / (
            decoded.norm(dim=-1) * target.norm(dim=-1))
        tokens, _ = model.run_encoder(images)
        features = model.encode_task_layer(tokens[:, 1:])
        features = features / features.norm(dim=-1, keepdim=True)
        codes = model.quantizer.codebook[ids.flatten(1)]
    torch.testing.assert_close(losses['loss_rec'], (1 - cosine).mean())
    torch.testing.assert_close(
        losses['loss_quant'],
        model.quantizer.beta * ((codes - features)**2).mean())
    assert 0.05 < float(losses['loss_rec']) < 1.5  # neither 0 nor opposite


def _ramps(angles, height, width):
    """Images whose three channels are linear ramps (one gradient
    direction per image, a different scale and sign per channel)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width),
                             indexing='ij')
    images = []
    for degrees in angles:
        angle = math.radians(degrees)
        ramp = 128 + 2.5 * (math.sin(angle) * (rows - height / 2) +
                            math.cos(angle) * (cols - width / 2))
        images.append(np.stack([ramp, ramp * 0.5 + 40, 200 - ramp * 0.7]))
    return np.stack(images)


def _skimage_patch_hog(images, patch_size=16, cell=8, nbins=9):
    """Per-patch features from ``skimage.feature.hog`` (one cell per block,
    L2 norm: per-cell normalised histograms), in HOGTarget's order
    (channel, bin, cell row, cell column). MaskFeat's HOG (mmpretrain's
    HOGGenerator) takes the angle as ``atan2(gx, gy)`` of Sobel filters that
    point the other way, i.e. the angle skimage measures on the transposed
    image, so skimage sees each channel transposed and its cells are
    transposed back. Sobel is 4x the central difference on linear ramps
    (the per-cell normalisation removes the factor), and both set the
    gradient across the image border to 0."""
    from skimage.feature import hog
    batch, _, height, width = images.shape
    rows, cols = height // cell, width // cell
    cells = np.zeros((batch, 3, nbins, rows, cols))
    for b in range(batch):
        for channel in range(3):
            out = hog(images[b, channel].T / 255., orientations=nbins,
                      pixels_per_cell=(cell, cell), cells_per_block=(1, 1),
                      block_norm='L2', feature_vector=False)
            cells[b, channel] = out[:, :, 0, 0, :].transpose(2, 1, 0)
    per = patch_size // cell
    return np.stack([
        cells[..., r * per:(r + 1) * per, c * per:(c + 1) * per].reshape(
            batch, -1) for r in range(rows // per) for c in range(cols // per)
    ], 1)


@pytest.mark.parametrize('size', [(32, 32), (32, 48)])
def test_hog_target_matches_skimage(size):
    """Orientation bins, magnitudes, per-cell normalisation and the
    grouping of cells into patches (row-major, a non-square grid too) agree
    with scikit-image on images with gradients inside the bins (ramps at
    angles away from the bin edges, which differ by half a bin between the
    two conventions)."""
    from mmvlp.models.tokenizers import HOGTarget
    images = _ramps((5, 35, 100, 125, 160, 245), *size)
    target = HOGTarget(patch_size=16, nbins=9, pool=8, gaussian_window=0)
    ours = target(torch.tensor(images, dtype=torch.float32))
    expected = _skimage_patch_hog(images)
    assert ours.shape == expected.shape == (
        6, size[0] // 16 * size[1] // 16, 3 * 9 * 4)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_hog_target_matches_mmpretrain_maskfeat_hog():
    """With its Gaussian window, HOGTarget equals mmpretrain's MaskFeat
    HOGGenerator on the 14x14 patch grid that generator is written for."""
    from mmpretrain.models.selfsup.maskfeat import HOGGenerator

    from mmvlp.models.tokenizers import HOGTarget
    images = _images(2, size=224)
    reference = HOGGenerator(nbins=9, pool=8, gaussian_window=16)
    torch.testing.assert_close(HOGTarget(patch_size=16)(images),
                               reference(images / 255.))


def test_encode_never_updates_codebook():
    model = _tiny_vqkd().train()
    model(_images(4), mode='loss')
    before = model.quantizer.codebook.clone()
    model.encode(_images(4, seed=5))
    assert torch.equal(before, model.quantizer.codebook)
    assert model.training and model.quantizer.training


def test_refuses_normalised_pixels():
    model = _tiny_vqkd().eval()
    normalised = (_images(2) - 128) / 64
    with pytest.raises(ValueError, match='raw pixels in \\[0, 255\\]'):
        model.encode(normalised)
    with pytest.raises(ValueError, match='remove mean'):
        VQKD(data_preprocessor=dict(type='ImgDataPreprocessor',
                                    mean=[0, 0, 0], std=[1, 1, 1]))


def test_teacher_without_weights_is_refused():
    with pytest.raises(ValueError, match='needs pretrained weights'):
        _tiny_vqkd(target=dict(type='FrozenTeacher', out_dims=64,
                               model=dict(type='mmvlp.BEiT3', arch='tiny',
                                          img_size=64)))


def test_frozen_teacher_target(tmp_path):
    """A BEiT3 teacher loaded from a checkpoint gives (B, N, C) targets."""
    from mmvlp.models import BEiT3
    teacher = BEiT3(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                              feedforward_channels=64), img_size=64,
                    max_text_len=8, vocab_size=16, text_mask_token_id=3)
    path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict()}, path)
    model = _tiny_vqkd(target=dict(
        type='FrozenTeacher', out_dims=32,
        model=dict(type='mmvlp.BEiT3', arch=dict(
            embed_dims=32, num_layers=1, num_heads=2,
            feedforward_channels=64), img_size=64, max_text_len=8,
            vocab_size=16, text_mask_token_id=3, out_type='featmap',
            init_cfg=dict(type='Pretrained', checkpoint=str(path)))))
    torch.testing.assert_close(model.target.model.cls_token,
                               teacher.cls_token)
    assert not any(p.requires_grad for p in model.target.parameters())
    losses = model.train()(_images(2), mode='loss')
    assert torch.isfinite(losses['loss_rec'])
    assert not model.target.model.training


def test_converter_tool(tmp_path, capsys):
    import importlib.util
    import os.path as osp
    tool = osp.join(osp.dirname(__file__), '..', 'tools', 'model_converters',
                    'vqkd_to_mmvlp.py')
    spec = importlib.util.spec_from_file_location('vqkd_tool', tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    src, dst = tmp_path / 'vqkd_official.pth', tmp_path / 'vqkd_mmvlp.pth'
    torch.save({'model': _unilm_weights(_mmpretrain_vqkd())}, src)
    assert module.main([str(src), str(dst)]) == 0
    assert 'format: unilm' in capsys.readouterr().out
    saved = torch.load(dst, weights_only=True)
    cfg = dict(saved['meta']['model_cfg'])
    cfg.pop('type')
    from mmengine.runner import load_checkpoint
    model = VQKD(**cfg)
    load_checkpoint(model, str(dst), strict=True, logger='silent')
    bad = tmp_path / 'bad.pth'
    torch.save({'model': {'conv.weight': torch.zeros(1)}}, bad)
    assert module.main([str(bad), str(tmp_path / 'x.pth')]) == 1
    assert 'Not a VQ-KD checkpoint' in capsys.readouterr().err


def test_compiled_encode_matches_eager_and_stays_safe(caplog):
    """``compile_encode``: same features as eager (ids equal up to float
    near-ties), a partial batch reuses the compiled graph, training and
    changed weights run eagerly, copies compile their own."""
    import copy
    import logging

    reference = _mmpretrain_vqkd()
    state, info = convert_vqkd(reference.state_dict())
    cfg = dict(info.model_cfg)
    cfg.pop('type')
    model = VQKD(**cfg).eval()
    model.load_state_dict(state)
    images = _images(batch=6)
    eager_tokens, _ = model.run_encoder(images)
    eager_ids = model.encode(images)

    model.compile_encode()
    with torch.no_grad():
        tokens, grid = model.run_encoder(images)
    compiled = model.compiled_encoder
    assert compiled.compiled is not None and compiled.batch_size == 6
    assert compiled.disabled_because is None
    assert grid == (4, 4)
    torch.testing.assert_close(tokens, eager_tokens, atol=1e-4, rtol=1e-4)
    ids = model.encode(images)
    assert (ids == eager_ids).float().mean() >= 0.97

    # A smaller batch is padded to the compiled one: no new graph.
    with torch.no_grad():
        part, _ = model.run_encoder(images[:2])
    assert part.shape[0] == 2
    torch.testing.assert_close(part, eager_tokens[:2], atol=1e-4, rtol=1e-4)
    assert compiled.batch_size == 6

    # Autograd on: eager (the compiled code has no backward).
    with torch.enable_grad():
        model.encoder.requires_grad_(True)
        out, _ = model.run_encoder(images)
        assert out.requires_grad
        model.encoder.requires_grad_(False)

    # Copies and pickles do not carry compiled code; a copy compiles anew.
    clone = copy.deepcopy(model)
    assert clone._compile_encode and clone.compiled_encoder is None

    # Changed weights: warn once, then eager and correct.
    with torch.no_grad():
        model.encoder.layers[0].ffn.fc1.weight.mul_(1.5)
        expected, _ = model._encoder_tokens(images)
    with caplog.at_level(logging.WARNING, logger='mmengine'):
        with torch.no_grad():
            after, _ = model.run_encoder(images)
    assert 'weights changed' in compiled.disabled_because
    torch.testing.assert_close(after, expected)


def _released_format(reference, decoder_dims=768):
    """An mmpretrain VQKD's weights in the layout of the released BEiT v2
    tokenizers (unilm ``beit2/modeling_vqkd.py`` with
    ``use_mean_pooling=True``): ``blocks``, ``fc_norm`` on the patch tokens
    instead of a final ``norm``, a decoder, its task layer (512-d CLIP
    space), the scaling layer and the teacher."""
    weights = {}
    for key, value in _unilm_weights(reference).items():
        if key.startswith('encoder.norm.'):
            key = key.replace('encoder.norm.', 'encoder.fc_norm.')
        if not key.startswith(('decoder.', 'decode_task_layer.')):
            weights[key] = value
    generator = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.02

    dims, codes = decoder_dims, reference.quantize.embedding.weight.shape[1]
    decoder = {'decoder.cls_token': rand(1, 1, dims),
               'decoder.pos_embed': rand(1, 197, dims),
               'decoder.patch_embed.proj.weight': rand(dims, codes, 1, 1),
               'decoder.patch_embed.proj.bias': rand(dims),
               'decoder.fc_norm.weight': rand(dims) + 1,
               'decoder.fc_norm.bias': rand(dims),
               'decode_task_layer.0.weight': rand(dims, dims),
               'decode_task_layer.0.bias': rand(dims),
               'decode_task_layer.2.weight': rand(512, dims),
               'decode_task_layer.2.bias': rand(512)}
    block = 'decoder.blocks.0.'
    for name, shape in (('norm1.weight', (dims, )), ('norm1.bias', (dims, )),
                        ('attn.qkv.weight', (3 * dims, dims)),
                        ('attn.q_bias', (dims, )), ('attn.v_bias', (dims, )),
                        ('attn.proj.weight', (dims, dims)),
                        ('attn.proj.bias', (dims, )),
                        ('norm2.weight', (dims, )), ('norm2.bias', (dims, )),
                        ('mlp.fc1.weight', (4 * dims, dims)),
                        ('mlp.fc1.bias', (4 * dims, )),
                        ('mlp.fc2.weight', (dims, 4 * dims)),
                        ('mlp.fc2.bias', (dims, ))):
        decoder[block + name] = rand(*shape)
    weights.update(decoder)
    return weights


def test_released_tokenizer_through_the_inference_config(tmp_path):
    """The shipped inference config (no teacher, no decoder) with a BEiT v2
    tokenizer file in the released layout, converted by the tool: the same
    token ids as mmpretrain's VQKD, through tools/tokenize_images.py and as
    BEiT3Pretrain's frozen tokenizer."""
    import importlib.util
    import json
    import os.path as osp

    import numpy as np
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmvlp.datasets import make_demo_dataset
    from mmvlp.models import BEiT3Pretrain

    root = osp.join(osp.dirname(__file__), '..')

    def tool(path, name):
        spec = importlib.util.spec_from_file_location(
            name, osp.join(root, 'tools', path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    reference = mmpretrain_vqkd('base', img_size=224, num_codes=8192,
                                code_dims=32, seed=2)
    src = tmp_path / 'vqkd_encoder_base_decoder_1x768x12_clip.pth'
    torch.save({'model': _released_format(reference)}, src)
    converted = tmp_path / 'vqkd_mmvlp.pth'
    assert tool('model_converters/vqkd_to_mmvlp.py', 'vqkd_tool').main(
        [str(src), str(converted)]) == 0

    make_demo_dataset(str(tmp_path / 'data'), num_train=2, num_val=0,
                      size=48)
    images = tmp_path / 'data' / 'images' / 'train'
    config = osp.join(root, 'configs', 'tokenizers',
                      'vqkd_vit-base-p16_beitv2_inference.py')
    tokenize = tool('tokenize_images.py', 'tokenize_images')
    out = tmp_path / 'tokens'
    assert tokenize.main([config, str(converted), '--data', str(images),
                          '--out', str(out)]) == 0
    assert json.loads((out / 'meta.json').read_text())['grid'] == [14, 14]
    shard = np.load(out / 'shard_00000.npz')
    pixels = torch.stack([
        torch.from_numpy(tokenize.load_image(str(p), (224, 224))).permute(
            2, 0, 1).float() for p in shard['paths']])
    cfg = Config.fromfile(config)
    mean = torch.tensor(cfg.clip_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.clip_std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((pixels - mean) / std).view(-1, 14, 14)
    agreement = (torch.as_tensor(shard['ids']).long() == expected).float()
    assert agreement.mean() >= 0.999, agreement.mean()

    init_default_scope('mmvlp')
    model = BEiT3Pretrain(
        backbone=dict(type='BEiT3', arch=dict(embed_dims=32, num_layers=1,
                                              num_heads=2,
                                              feedforward_channels=64),
                      img_size=224, vocab_size=16, max_text_len=8,
                      text_mask_token_id=3),
        tokenizer=cfg.model, tokenizer_checkpoint=str(converted))
    assert torch.equal(model.tokenizer.encode(pixels[:1]),
                       torch.as_tensor(shard['ids'][:1]).long())
