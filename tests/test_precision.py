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
