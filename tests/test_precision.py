"""Precision by construction: what must not depend on the mixed-precision
setting (autocast, DeepSpeed bf16) does not."""
import copy

import torch
import torch.nn.functional as F

from mmvlp.models.quantizers import NormEMAVectorQuantizer
from mmvlp.models.quantizers.norm_ema import assign_by_cosine


def test_vqkd_codes_do_not_change_under_bf16_autocast():
    """The VQ-KD quantizer assigns codes (and updates its EMA codebook) in
    fp32 under autocast; the same products inside autocast pick other codes
    for some vectors (which is what ``.float()`` alone gave)."""
    torch.manual_seed(0)
    quantizer = NormEMAVectorQuantizer(num_codes=512, code_dims=32,
                                       kmeans_init=False)
    z = torch.randn(4096, 32)
    reference = quantizer.eval()(z)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = quantizer(z)
        naive = assign_by_cosine(F.normalize(z.float(), dim=-1),
                                 quantizer.codebook.float())
    assert torch.equal(mixed.indices, reference.indices)
    assert mixed.quantized.dtype == torch.float32
    assert (naive != reference.indices).sum() > 0
    # Training mode: the EMA step gives the same codebook.
    plain, under = quantizer.train(), copy.deepcopy(quantizer).train()
    plain(z)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        under(z.bfloat16())
    # (bf16 inputs are rounded; the codebook update is still fp32 maths.)
    assert under.codebook.dtype == torch.float32
    assert torch.allclose(under.codebook, plain.codebook, atol=1e-2)


def _pretrain_model():
    """A tiny BEiT3Pretrain with a VQ-KD tokenizer (random weights, a
    random unit codebook of 512 codes so that targets are varied)."""
    from mmvlp.models.algorithms import BEiT3Pretrain
    torch.manual_seed(0)
    tokenizer = dict(
        type='VQKD',
        encoder=dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                               feedforward_channels=128),
                     img_size=32, patch_size=8),
        quantizer=dict(type='NormEMAVectorQuantizer', num_codes=512,
                       code_dims=16, kmeans_init=False),
        decoder=dict(arch=dict(embed_dims=64, num_layers=1, num_heads=2,
                               feedforward_channels=128)),
        target=dict(type='ColorHistogramTarget', patch_size=8, bins=4))
    backbone = dict(type='BEiT3', arch=dict(embed_dims=32, num_layers=1,
                                            num_heads=2,
                                            feedforward_channels=64),
                    img_size=32, patch_size=8, vocab_size=16, max_text_len=8,
                    text_mask_token_id=15)
    return BEiT3Pretrain(backbone=backbone, tokenizer=tokenizer)


def test_tokenizer_targets_equal_under_deepspeed_bf16():
    """DeepSpeed bf16 casts its whole module to bf16 and the inputs too.
    With the tokenizer kept outside the engine (fp32) and run under
    autocast, the targets equal those of AmpOptimWrapper's bf16 autocast
    with fp32 weights (DDP, FSDP); a tokenizer cast with the module gives
    other targets."""
    from mmvlp.compat.strategies import detach_frozen_modules
    model = _pretrain_model().eval()
    pixels = torch.randint(0, 256, (32, 3, 32, 32)).float()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        reference = model._visual_targets(dict(tokenizer_images=pixels))
    # What mmvlp's DeepSpeed setup does, then what the engine does.
    kept = copy.deepcopy(model)
    assert detach_frozen_modules(kept) == ['tokenizer']
    assert 'tokenizer' not in dict(kept.named_children())
    kept.target_autocast = torch.bfloat16
    kept.bfloat16()
    assert next(kept.tokenizer.parameters()).dtype == torch.float32
    targets = kept._visual_targets(dict(tokenizer_images=pixels.bfloat16()))
    assert torch.equal(targets, reference)
    # Without it: the tokenizer's weights are cast to bf16.
    cast = copy.deepcopy(model).bfloat16()
    other = cast._visual_targets(dict(tokenizer_images=pixels.bfloat16()))
    assert (other != reference).sum() > 0


def test_detach_refuses_trainable_modules():
    import pytest

    from mmvlp.compat.strategies import detach_frozen_modules
    model = _pretrain_model()
    model.tokenizer.requires_grad_(True)
    with pytest.raises(ValueError, match='trainable parameters'):
        detach_frozen_modules(model)


def test_code_counts_without_bincount_agree():
    """The sync-free count of the accelerator path equals bincount."""
    from mmvlp.models.quantizers.norm_ema import count_codes
    indices = torch.randint(0, 50, (1000, ))
    expected = torch.bincount(indices, minlength=64)
    assert torch.equal(count_codes(indices, 64), expected)
    scattered = torch.zeros(64, dtype=torch.long).scatter_add_(
        0, indices, torch.ones_like(indices))
    assert torch.equal(scattered, expected)
