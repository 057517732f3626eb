"""Released QLIP models in mmvlp: the converter and parity with a
re-statement of the official model (tests/helpers/qlip_reference.py) on
random weights saved in the official Hugging Face layout."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.runner import load_checkpoint

from mmvlp.models.converters import convert_qlip, load_qlip
from mmvlp.models.converters.qlip import (CLIP_MEAN, CLIP_STD,
                                          qlip_config_to_mmvlp,
                                          read_qlip_checkpoint)
from mmvlp.models.tokenizers import BSQViT
from helpers.qlip_reference import (QLIPReference, qlip_config,
                                    randomize, save_hf, tower_config)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOL = 1e-4


def config_rope_swiglu() -> dict:
    """EVA-style vision (Sub-LN, SwiGLU, rope, no key bias), 28-bit codes
    (ids above 2**24), an MLP into the code space, odd widths and an odd
    patch grid (5x5)."""
    vision = tower_config(
        hidden_size=24, intermediate_size=37, num_attention_heads=2,
        image_size=20, patch_size=4, subln=True, swiglu=True, rope=True,
        k_bias=False, layer_norm_eps=1e-6, quantizer='bsq',
        quantizer_l2_norm=True, quantizer_embed_type='mlp',
        hidden_size_post_q=20,
        quantizer_cfg=dict(embed_dim=28, group_size=7, input_format='blc',
                           l2_norm=True, inv_temperature=100.0, beta=0.0,
                           gamma_0=1.0, gamma_1=1.0, soft_entropy=True,
                           persample_entropy_compute='group'))
    decoder = tower_config(
        hidden_size=20, intermediate_size=33, num_attention_heads=5,
        image_size=20, patch_size=4, rope=True, hidden_act='quick_gelu',
        num_hidden_layers=3)
    text = tower_config(
        vocab_size=100, hidden_size=16, intermediate_size=29,
        num_attention_heads=2, max_position_embeddings=11,
        hidden_act='quick_gelu', bos_token_id=98, eos_token_id=99,
        pad_token_id=1)
    return qlip_config(vision, decoder, text, projection_dim=12)


def config_plain() -> dict:
    """Plain CLIP-style layers (no rope, no Sub-LN, GELU), no q/k/v biases,
    the identity into an 8-bit code space, argmax pooling (eos id 2), no
    projection biases."""
    vision = tower_config(
        hidden_size=8, intermediate_size=19, num_attention_heads=1,
        image_size=15, patch_size=3, q_bias=False, k_bias=False,
        v_bias=False, quantizer='bsq', quantizer_l2_norm=True,
        quantizer_embed_type='identity',
        quantizer_cfg=dict(embed_dim=8, group_size=4, input_format='blc',
                           l2_norm=True))
    decoder = tower_config(hidden_size=8, intermediate_size=11,
                           num_attention_heads=2, image_size=15,
                           patch_size=3, hidden_act='gelu_pytorch_tanh')
    text = tower_config(vocab_size=50, hidden_size=12, intermediate_size=21,
                        num_attention_heads=3, max_position_embeddings=9,
                        eos_token_id=2)
    return qlip_config(vision, decoder, text, projection_dim=5,
                       vision_projection_bias=False,
                       text_projection_bias=False)


CONFIGS = dict(rope_swiglu=config_rope_swiglu, plain=config_plain)


def make_reference(name: str, seed: int = 0) -> QLIPReference:
    torch.manual_seed(seed)
    ref = QLIPReference(CONFIGS[name]()).eval()
    randomize(ref, seed)
    return ref


def inputs(ref: QLIPReference, batch: int = 3, seed: int = 1):
    """Raw pixels, the same normalised with CLIP's statistics, text ids."""
    gen = torch.Generator().manual_seed(seed)
    size = ref.config['vision_config']['image_size']
    raw = torch.rand(batch, 3, size, size, generator=gen) * 255
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    text = ref.config['text_config']
    length, vocab = text['max_position_embeddings'], text['vocab_size']
    eos = text['eos_token_id']
    ids = torch.zeros(batch + 1, length, dtype=torch.long)
    for row in range(batch + 1):
        count = 2 + row % (length - 2)  # bos + words, then eos, then pad 0
        words = torch.randint(3, vocab - 2, (count - 1,), generator=gen)
        ids[row, 0] = vocab - 2 if eos != 2 else 1
        ids[row, 1:count] = words
        ids[row, count] = eos
    return raw, (raw - mean) / std, ids


def compare(model: BSQViT, ref: QLIPReference, raw, pixels, ids) -> None:
    expected = ref(ids, pixels)
    with torch.no_grad():
        image = model.encode_image_embedding(raw)
        text = model.encode_text_embedding(ids)
        logits = model.zero_shot_logits(raw, ids)
        token_ids = model.encode(raw)
        _, output, grid = model._encode(raw)
        recon = model._pixels(output.quantized, grid)
    torch.testing.assert_close(image, expected['image_embeds'], atol=TOL,
                               rtol=0)
    torch.testing.assert_close(text, expected['text_embeds'], atol=TOL,
                               rtol=0)
    torch.testing.assert_close(logits, expected['logits_per_image'],
                               atol=TOL, rtol=0)
    torch.testing.assert_close(recon, expected['reconstructions'], atol=TOL,
                               rtol=0)
    # Token ids in the official (big-endian) bit order, exact int64.
    assert token_ids.dtype == torch.int64
    assert torch.equal(token_ids.flatten(1), expected['indices'])


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_converted_qlip_matches_reference(tmp_path, name):
    ref = make_reference(name)
    save_hf(ref, str(tmp_path))
    model = load_qlip(str(tmp_path))
    raw, pixels, ids = inputs(ref)
    compare(model, ref, raw, pixels, ids)
    # decode(ids) is the reconstruction of the encoded image.
    with torch.no_grad():
        torch.testing.assert_close(model.decode(model.encode(raw)),
                                   model.reconstruct(raw))
    if name == 'rope_swiglu':
        assert int(ref(ids, pixels)['indices'].max()) > 2**24


def test_saved_layout_is_the_official_one(tmp_path):
    """The files the tests convert carry the official key names, rope
    buffers stored once as save_pretrained does."""
    from safetensors import safe_open
    ref = make_reference('rope_swiglu')
    save_hf(ref, str(tmp_path))
    with safe_open(str(tmp_path / 'model.safetensors'), 'pt') as f:
        keys = set(f.keys())
    for key in ('vision_model.embeddings.class_embedding',
                'vision_model.encoder.layers.0.self_attn.q_proj.weight',
                'vision_model.encoder.layers.0.mlp.w1.weight',
                'vision_model.quant_embed.c_fc.weight',
                'vision_model.quant_embed_post.c_proj.bias',
                'vision_model.post_layernorm.weight',
                'vision_decoder.position_embeddings',
                'vision_decoder.ffn.0.weight', 'vision_decoder.conv_out.bias',
                'text_model.embeddings.token_embedding.weight',
                'text_model.final_layer_norm.bias',
                'visual_projection.bias', 'text_projection.weight',
                'logit_scale'):
        assert key in keys, key
    rope = [k for k in keys if 'freqs_cos' in k]
    assert len(rope) == 2  # one per tower: vision and decoder
    config = json.loads((tmp_path / 'config.json').read_text())
    assert config['vision_config']['quantizer_cfg']['embed_dim'] == 28


def test_bin_state_dict_with_every_rope_buffer(tmp_path):
    """A plain torch.save of the full state dict (a rope buffer per layer)
    converts to the same model."""
    ref = make_reference('rope_swiglu', seed=3)
    save_hf(ref, str(tmp_path), fmt='bin')
    _, weights, _ = read_qlip_checkpoint(str(tmp_path))
    assert sum('freqs_sin' in k for k in weights) == 2 + 2 + 3
    model = load_qlip(str(tmp_path / 'pytorch_model.bin'))
    compare(model, ref, *inputs(ref, seed=5))


def test_converter_tool(tmp_path):
    """The command line tool writes a checkpoint and prints a config that
    builds the model it loads into."""
    ref = make_reference('rope_swiglu', seed=2)
    src = tmp_path / 'qlip'
    src.mkdir()
    save_hf(ref, str(src))
    dst = tmp_path / 'qlip_mmvlp.pth'
    cfg_out = tmp_path / 'qlip_cfg.py'
    result = subprocess.run(
        [sys.executable, 'tools/model_converters/qlip_to_mmvlp.py',
         str(src), str(dst), '--config-out', str(cfg_out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "'type': 'BSQViT'" in result.stdout
    from mmengine.config import Config
    from mmvlp.registry import MODELS
    cfg = Config.fromfile(str(cfg_out))
    model = MODELS.build(cfg.model).eval()
    load_checkpoint(model, str(dst), map_location='cpu', strict=True,
                    logger='silent')
    compare(model, ref, *inputs(ref))


def test_converter_errors(tmp_path):
    ref = make_reference('plain')
    config = ref.config
    weights = dict(ref.state_dict())
    # A missing weight is named.
    broken = dict(weights)
    broken.pop('vision_decoder.conv_out.weight')
    with pytest.raises(ValueError, match='conv_out|pixel_head'):
        convert_qlip(broken, config)
    # An unknown weight is named.
    with pytest.raises(ValueError, match='extra.weight'):
        convert_qlip(dict(weights, **{'extra.weight': torch.zeros(1)}),
                     config)
    # Settings mmvlp cannot reproduce.
    bad = json.loads(json.dumps(config))
    bad['vision_config']['quantizer_cfg']['l2_norm'] = False
    with pytest.raises(ValueError, match='l2_norm'):
        qlip_config_to_mmvlp(bad)
    bad = json.loads(json.dumps(config))
    bad['decoder_config']['hidden_size'] = 16
    with pytest.raises(ValueError, match='decoder_config.hidden_size'):
        qlip_config_to_mmvlp(bad)
    # A rope table of another layout is refused.
    ref = make_reference('rope_swiglu')
    weights = dict(ref.state_dict())
    key = 'vision_model.rope.freqs_cos'
    weights[key] = weights[key].flip(0)
    with pytest.raises(ValueError, match='rotary'):
        convert_qlip(weights, ref.config)
    # Missing files.
    with pytest.raises(FileNotFoundError, match='config.json'):
        read_qlip_checkpoint(str(tmp_path))


def test_clip_bpe_tokenizer_and_text_tower():
    """The CLIP BPE ids (mmsegmentation's copy of the vocabulary) feed the
    CLIP-style text tower, pooled at the end-of-text token."""
    from mmvlp.models.backbones import CLIPTextTransformer
    from mmvlp.text import CLIPBPETokenizer
    tokenizer = CLIPBPETokenizer(context_length=12)
    # OpenAI CLIP's ids of this sentence.
    assert tokenizer.encode('A photo of a dog.')[:6] == [49406, 320, 1125,
                                                         539, 320, 1929]
    ids, padding = tokenizer(['a photo of a dog', 'a cat ' * 20])
    assert ids.shape == (2, 12) and ids[1, -1] == 49407
    assert int((~padding[0]).sum()) == 7 and ids[0, 6] == 49407
    assert tokenizer.decode(ids[0]) == 'a photo of a dog'
    from mmengine.registry import init_default_scope
    from mmvlp.registry import MODELS
    init_default_scope('mmvlp')
    built = MODELS.build(dict(type='CLIPBPETokenizer', context_length=12))
    assert torch.equal(built(['a photo of a dog'])[0], ids[:1])
    torch.manual_seed(0)
    tower = CLIPTextTransformer(
        arch=dict(embed_dims=16, num_layers=1, num_heads=2,
                  feedforward_channels=32), max_text_len=12).eval()
    with torch.no_grad():
        hidden = tower.forward_sequence(ids, padding)
        pooled = tower(ids, padding)
        # Causal: padding after the end token changes nothing before it.
        torch.testing.assert_close(pooled, tower(ids))
    torch.testing.assert_close(pooled[0], hidden[0, 6])
    torch.testing.assert_close(pooled[1], hidden[1, 11])
    with pytest.raises(ValueError, match='end-of-text'):
        tower(torch.full((1, 5), 320))


def test_zero_shot_interface(tmp_path):
    """A converted QLIP model is a dual encoder: encode_image /
    encode_text give unit embeddings, logit_scale is the log scale, and
    model.tokenizer tokenizes class prompts."""
    ref = make_reference('rope_swiglu')
    save_hf(ref, str(tmp_path))
    model = load_qlip(str(tmp_path))
    raw, _, ids = inputs(ref)
    image = model.encode_image(raw)
    text = model.encode_text(ids)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(len(raw)))
    torch.testing.assert_close(
        model.logit_scale.exp() * image @ text.t(),
        model.zero_shot_logits(raw, ids))
    assert model.tokenizer.context_length == 11
    with pytest.raises(RuntimeError, match='text tower'):
        BSQViT(encoder=dict(arch=dict(embed_dims=8, num_layers=1,
                                      num_heads=2, feedforward_channels=8),
                            img_size=8, patch_size=4),
               quantizer=dict(type='BinarySphericalQuantizer', code_dims=4,
                              group_size=2),
               decoder=dict(arch=dict(embed_dims=8, num_layers=1,
                                      num_heads=2, feedforward_channels=8))
               ).encode_image(raw[:, :, :8, :8])
