"""The official BEiT-3 model (torchscale 0.3.0) for parity tests; built by
:mod:`mmvlp.testing` (shared with ``benchmarks/``)."""
import torch

from mmvlp.testing import official_checkpoint, torchscale_beit3

__all__ = ['TINY', 'BASE', 'build_reference', 'official_checkpoint']

TINY = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)
BASE = dict(embed_dims=768, num_layers=12, num_heads=12,
            feedforward_channels=3072)


def build_reference(arch: dict, img_size: int = 32, patch_size: int = 16,
                    vocab_size: int = 64010, seed: int = 0) -> torch.nn.Module:
    """torchscale's BEiT3 as unilm configures it, with every tensor random
    (see :func:`mmvlp.testing.torchscale_beit3`)."""
    return torchscale_beit3(arch, img_size=img_size, patch_size=patch_size,
                            vocab_size=vocab_size, seed=seed)
