"""Build the official BEiT-3 model (torchscale 0.3.0) for parity tests."""
import torch
from torchscale.architecture.config import EncoderConfig
from torchscale.model.BEiT3 import BEiT3 as TorchscaleBEiT3

TINY = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)
BASE = dict(embed_dims=768, num_layers=12, num_heads=12,
            feedforward_channels=3072)


def build_reference(arch: dict, img_size: int = 32, patch_size: int = 16,
                    vocab_size: int = 64010, seed: int = 0) -> torch.nn.Module:
    """torchscale's BEiT3 as unilm configures it, with every tensor random.

    LayerNorms, biases and the CLS/mask tokens start as constants in the
    reference; they are perturbed so that a wrong mapping cannot hide.
    """
    torch.manual_seed(seed)
    config = EncoderConfig(
        img_size=img_size,
        patch_size=patch_size,
        vocab_size=vocab_size,
        multiway=True,
        layernorm_embedding=False,
        normalize_output=True,
        no_output_layer=True,
        encoder_embed_dim=arch['embed_dims'],
        encoder_attention_heads=arch['num_heads'],
        encoder_ffn_embed_dim=arch['feedforward_channels'],
        encoder_layers=arch['num_layers'])
    model = TorchscaleBEiT3(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 or 'token' in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def official_checkpoint(model: torch.nn.Module, wrapper: str = 'model',
                        extra: dict = None) -> dict:
    """The model's weights in the layout of the released ``.pth`` files."""
    weights = {f'beit3.{k}': v.clone() for k, v in model.state_dict().items()}
    weights.update(extra or {})
    return {wrapper: weights}
