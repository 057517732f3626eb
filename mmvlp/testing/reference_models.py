"""Build the official models and their mmvlp twins with the same weights.

* BEiT-3: torchscale 0.3.0's ``BEiT3`` configured as unilm's ``beit3/``
  does; its weights go through mmvlp's converter
  (:func:`~mmvlp.models.converters.convert_unilm_beit3`).
* VQ-KD: mmpretrain 1.2.0's ``VQKD`` (encoder + quantizer); weights go
  through :func:`~mmvlp.models.converters.convert_vqkd`.

Every tensor is random, and the tensors the references start as constants
(LayerNorms, biases, CLS/mask tokens) are perturbed so that a wrong mapping
cannot hide.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from mmvlp.models.backbones.beit3 import ARCH_SETTINGS, BEiT3
from mmvlp.models.converters import convert_unilm_beit3, convert_vqkd
from mmvlp.models.layers import resolve_arch
from mmvlp.models.tokenizers import VQKD

__all__ = [
    'torchscale_beit3', 'official_checkpoint', 'mmvlp_beit3_from_torchscale',
    'mmpretrain_vqkd', 'mmvlp_vqkd_from_mmpretrain'
]


def _perturb(module: nn.Module, scale: float = 0.1) -> None:
    """Add noise to 1-d tensors, biases and tokens (constants at init)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() == 1 or 'token' in name or 'bias' in name:
                param.add_(scale * torch.randn_like(param))


def torchscale_beit3(arch: Union[str, dict] = 'base',
                     img_size: int = 224,
                     patch_size: int = 16,
                     vocab_size: int = 64010,
                     seed: int = 0,
                     perturb: bool = True,
                     normalize_output: bool = True) -> nn.Module:
    """torchscale's ``BEiT3`` as unilm's ``beit3/`` configures it.

    Args:
        arch (str | dict): A :class:`~mmvlp.models.BEiT3` arch name or dict
            (``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels``).
        img_size (int): Image side.
        patch_size (int): Patch side.
        vocab_size (int): Rows of the text table.
        seed (int): Seed of the random weights.
        perturb (bool): Randomise the constant-initialised tensors too.
        normalize_output (bool): The final LayerNorm (False for the
            official ImageNet and VQA models).

    Returns:
        nn.Module: The model in eval mode.
    """
    try:
        from torchscale.architecture.config import EncoderConfig
        from torchscale.model.BEiT3 import BEiT3 as TorchscaleBEiT3
    except ImportError as error:
        raise ImportError(
            'The official BEiT-3 model needs torchscale 0.3.0: '
            'pip install --no-deps torchscale==0.3.0 fairscale==0.4.13 timm '
            '(see requirements/tests*.txt).') from error
    settings = resolve_arch(arch, ARCH_SETTINGS, 'BEiT3')
    torch.manual_seed(seed)
    config = EncoderConfig(
        img_size=img_size,
        patch_size=patch_size,
        vocab_size=vocab_size,
        multiway=True,
        layernorm_embedding=False,
        normalize_output=normalize_output,
        no_output_layer=True,
        encoder_embed_dim=settings['embed_dims'],
        encoder_attention_heads=settings['num_heads'],
        encoder_ffn_embed_dim=settings['feedforward_channels'],
        encoder_layers=settings['num_layers'])
    model = TorchscaleBEiT3(config).eval()
    if perturb:
        _perturb(model)
    return model


def official_checkpoint(model: nn.Module,
                        wrapper: str = 'model',
                        extra: Optional[dict] = None) -> dict:
    """A torchscale model's weights in the layout of the released ``.pth``
    files (``{'model': {'beit3.<key>': tensor}}``)."""
    weights = {f'beit3.{k}': v.clone() for k, v in model.state_dict().items()}
    weights.update(extra or {})
    return {wrapper: weights}


def mmvlp_beit3_from_torchscale(reference: nn.Module,
                                **kwargs) -> BEiT3:
    """mmvlp's ``BEiT3`` with the weights of a torchscale ``BEiT3``.

    Args:
        reference (nn.Module): From :func:`torchscale_beit3`.
        **kwargs: Further :class:`~mmvlp.models.BEiT3` arguments (e.g.
            ``with_cp``); the architecture comes from the weights.

    Returns:
        BEiT3: In eval mode, loaded strictly.
    """
    weights = {f'beit3.{k}': v for k, v in reference.state_dict().items()}
    state_dict, report = convert_unilm_beit3(weights, layout='decoupled')
    cfg = report.backbone_cfg()
    cfg.pop('type')
    cfg['arch']['num_heads'] = reference.args.encoder_attention_heads
    cfg.update(kwargs)
    model = BEiT3(**cfg)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def mmpretrain_vqkd(arch: Union[str, dict] = 'base',
                    img_size: int = 224,
                    patch_size: int = 16,
                    num_codes: int = 8192,
                    code_dims: int = 32,
                    seed: int = 0,
                    perturb: bool = True) -> nn.Module:
    """mmpretrain 1.2.0's ``VQKD`` (BEiT v2 tokenizer) with a ViT encoder as
    in mmpretrain's BEiT v2 configs.

    Args:
        arch (str | dict): mmpretrain ``BEiTViT`` arch name or dict.
        img_size (int): Image side.
        patch_size (int): Patch side.
        num_codes (int): Codebook size.
        code_dims (int): Code width.
        seed (int): Seed of the random weights.
        perturb (bool): Randomise the constant-initialised tensors too.

    Returns:
        nn.Module: The model in eval mode; it takes normalised images.
    """
    from mmpretrain.models.selfsup.beit import VQKD as MMPretrainVQKD
    torch.manual_seed(seed)
    encoder_config = dict(
        arch=arch, img_size=img_size, patch_size=patch_size, in_channels=3,
        out_indices=-1, drop_rate=0., drop_path_rate=0.,
        norm_cfg=dict(type='LN', eps=1e-6), final_norm=True,
        out_type='featmap', with_cls_token=True, frozen_stages=-1,
        use_abs_pos_emb=True, use_rel_pos_bias=False,
        use_shared_rel_pos_bias=False, layer_scale_init_value=0.,
        interpolate_mode='bicubic', patch_cfg=dict(), layer_cfgs=dict())
    model = MMPretrainVQKD(encoder_config=encoder_config, num_embed=num_codes,
                           embed_dims=code_dims,
                           quantize_kmeans_init=False).eval()
    if perturb:
        _perturb(model)
    return model


def mmvlp_vqkd_from_mmpretrain(reference: nn.Module) -> Tuple[VQKD, dict]:
    """mmvlp's ``VQKD`` with the weights of an mmpretrain ``VQKD``.

    Returns:
        tuple: The model (eval mode, loaded strictly) and its config.
    """
    state, info = convert_vqkd(reference.state_dict())
    cfg = dict(info.model_cfg)
    cfg.pop('type')
    model = VQKD(**cfg)
    model.load_state_dict(state, strict=True)
    return model.eval(), cfg
