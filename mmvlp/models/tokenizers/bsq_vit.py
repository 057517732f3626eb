"""BSQ-ViT tokenizer in the style of QLIP, with its two training stages.

ViT encoder -> binary spherical quantization of the patch tokens -> ViT pixel
decoder. Stage 1 trains everything with reconstruction + quantizer entropy and,
with a text tower, contrastive alignment of the *unquantized* CLS (weights
balanced by gradient magnitude). Stage 2 freezes the encoder and trains the
quantizer and decoder with perceptual and adversarial (PatchGAN) losses.

The options of QLIP's released models (``tools/model_converters/
qlip_to_mmvlp.py`` converts them): an MLP into and out of the code space
(``quant_embed='mlp'``), a ``LayerNorm -> Linear -> Tanh -> Linear`` pixel
head, biased projections and a CLIP-style causal text tower
(:class:`~mmvlp.models.backbones.CLIPTextTransformer`).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub

from mmvlp.registry import MODELS, build_scoped
from ..backbones.beit3_reach import freeze_unused
from ..backbones.vit import VIT_ARCHS, ViTEncoder
from ..heads.contrastive import contrastive_loss
from ..layers import resolve_arch
from ..quantizers import QuantizerOutput
from .base import (IMAGENET_MEAN, IMAGENET_STD, BaseVisualTokenizer,
                   unwrap_ddp)
from .losses import hinge_d_loss, hinge_g_loss
from .targets import check_raw_pixels

RECON_LOSSES = ('l1', 'l2')
QUANT_EMBEDS = ('linear', 'mlp', 'identity')


@MODELS.register_module()
class BSQViT(BaseVisualTokenizer):
    """BSQ-ViT visual tokenizer with optional language alignment (QLIP).

    Args:
        encoder (dict): :class:`~mmvlp.models.backbones.ViTEncoder` arguments.
        quantizer (dict): A ``BinarySphericalQuantizer`` config; its
            ``in_dims`` is set to the encoder width.
        decoder (dict): ``ViTEncoder`` arguments of the pixel decoder (it
            reads the quantized patch map with patch size 1).
        recon_loss (str): ``'l1'`` or ``'l2'`` on normalised pixels.
        text_encoder (dict, optional): A model config whose
            ``forward_pooled(text_ids, text_padding_mask)`` returns the
            ``(B, C)`` sentence features (e.g.
            ``mmvlp.CLIPTextTransformer``), or whose
            ``forward_sequence(text_ids=..., text_padding_mask=...)`` returns
            ``(B, L, C)`` with the text CLS first (e.g. ``mmvlp.BEiT3``).
            When given, the unquantized image CLS and the text feature are
            aligned contrastively.
        embed_dims (int): Width of the contrastive embedding space.
        quant_embed (str): How patch tokens enter and leave the code space:
            ``'linear'`` (default): the quantizer's own input/output
            projections (``in_dims`` set to the encoder width);
            ``'mlp'`` (QLIP): ``quant_embed`` = Linear(C, C) -> GELU ->
            Linear(C, L) before the quantizer and ``quant_embed_post`` =
            Linear(L, P) -> GELU -> Linear(P, P) after it, ``P =
            post_quant_dims``; ``'identity'``: the encoder width is the code
            width ``L``.
        post_quant_dims (int, optional): ``P`` of ``quant_embed='mlp'``, the
            decoder's input width (defaults to the decoder width).
        pixel_head_hidden (int, optional): Hidden width of a ``Linear ->
            Tanh -> Linear`` pixel head (QLIP's decoder); None (default): one
            linear layer.
        image_proj_bias (bool): Bias on the image projection.
        text_proj_bias (bool): Bias on the text projection.
        balance_by_grad (bool): Weight the contrastive loss by
            ``||grad recon|| / ||grad contrastive||`` on the encoder's last
            block's FFN output weight (detached, clipped to
            ``max_balance_weight``; QLIP's "weighted by gradient magnitude")
            instead of the fixed ``contrastive_weight``. Measuring the ratio
            costs two extra partial backward passes.
        max_balance_weight (float): Upper bound of that weight.
        balance_interval (int): Measure the ratio on every
            ``balance_interval``-th training step only and reuse the stored
            weight in between (1: every step). Defaults to 1.
        balance_momentum (float): EMA momentum of the stored weight over the
            measurements, ``w <- m * w + (1 - m) * ratio`` (the first
            measurement sets it); 0 keeps the last ratio. Defaults to 0.
            With ``balance_interval > 1`` or a momentum, the weight is a
            persistent buffer ``balance_weight`` (saved and resumed).
        contrastive_weight (float): The fixed weight without
            ``balance_by_grad`` (e.g. a ratio measured in a short run, see
            docs/tokenizers.md); with it, a factor on the measured weight.
            Defaults to 1.
        stage (int): 1 or 2 (see the module docstring). Stage 2 needs
            ``perceptual_loss`` and ``discriminator`` and an optimizer per part
            (``MultiOptimWrapperConstructor`` with ``generator`` and
            ``discriminator``).
        perceptual_loss (dict, optional): A ``PerceptualLoss`` config (stage 2).
        perceptual_weight (float): Weight of the perceptual loss.
        discriminator (dict, optional): A ``PatchDiscriminator`` config.
        adversarial_weight (float): Multiplier of the adaptive adversarial
            weight ``||grad rec|| / ||grad adv||`` on the pixel head.
        disc_start_iter (int): Iteration from which the adversarial losses
            are used.
        mean (Sequence[float]): Pixel mean (0-255) the encoder expects.
        std (Sequence[float]): Pixel std (0-255).
        data_preprocessor (dict, optional): Must not normalise.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 encoder: dict = dict(arch='base', img_size=256,
                                      patch_size=16),
                 quantizer: dict = dict(type='BinarySphericalQuantizer',
                                        code_dims=18, group_size=9),
                 decoder: dict = dict(arch='base'),
                 recon_loss: str = 'l1',
                 text_encoder: Optional[dict] = None,
                 embed_dims: int = 512,
                 quant_embed: str = 'linear',
                 post_quant_dims: Optional[int] = None,
                 pixel_head_hidden: Optional[int] = None,
                 image_proj_bias: bool = False,
                 text_proj_bias: bool = False,
                 balance_by_grad: bool = True,
                 max_balance_weight: float = 1e3,
                 balance_interval: int = 1,
                 balance_momentum: float = 0.,
                 contrastive_weight: float = 1.,
                 stage: int = 1,
                 perceptual_loss: Optional[dict] = None,
                 perceptual_weight: float = 1.0,
                 discriminator: Optional[dict] = None,
                 adversarial_weight: float = 0.1,
                 disc_start_iter: int = 0,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(mean, std, data_preprocessor, init_cfg)
        if recon_loss not in RECON_LOSSES:
            raise ValueError(f'recon_loss must be one of {RECON_LOSSES}, got '
                             f'{recon_loss!r}.')
        self.recon_loss = recon_loss
        self.encoder = ViTEncoder(**encoder)
        if self.encoder.cls_token is None:
            raise ValueError('BSQViT needs an encoder with a CLS token.')
        dims = self.encoder.embed_dims
        decoder_in = self._build_quantizer(quantizer, quant_embed,
                                           post_quant_dims, decoder)
        self.decoder = ViTEncoder(
            img_size=self.encoder.patch_grid,
            patch_size=1,
            in_channels=decoder_in,
            **decoder)
        patch = self.encoder.patch_size
        out = 3 * patch * patch
        if pixel_head_hidden is None:
            self.pixel_head = nn.Linear(self.decoder.embed_dims, out)
        else:
            self.pixel_head = nn.Sequential(
                nn.Linear(self.decoder.embed_dims, pixel_head_hidden),
                nn.Tanh(), nn.Linear(pixel_head_hidden, out))

        self.text_encoder = None
        if text_encoder is not None:
            self.text_encoder = build_scoped(MODELS, text_encoder)
            if hasattr(self.text_encoder, 'patch_embed') and hasattr(
                    self.text_encoder, 'text_embed'):  # a BEiT3: texts only
                # (its vision parts would get no gradient, which DDP
                # rejects at the second iteration).
                freeze_unused(self.text_encoder, ('text', ))
            self.image_proj = nn.Linear(dims, embed_dims, bias=image_proj_bias)
            self.text_proj = nn.Linear(self.text_encoder.embed_dims,
                                       embed_dims, bias=text_proj_bias)
            self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())
        if balance_interval < 1:
            raise ValueError(f'balance_interval must be >= 1, got '
                             f'{balance_interval}.')
        if not 0. <= balance_momentum < 1.:
            raise ValueError(f'balance_momentum must be in [0, 1), got '
                             f'{balance_momentum}.')
        self.balance_by_grad = balance_by_grad
        self.max_balance_weight = max_balance_weight
        self.balance_interval = balance_interval
        self.balance_momentum = balance_momentum
        self.contrastive_weight = contrastive_weight
        self._balance_calls = 0
        if (text_encoder is not None and balance_by_grad and
                (balance_interval > 1 or balance_momentum > 0)):
            # 0 = not measured yet.
            self.register_buffer('balance_weight', torch.zeros(()))

        if stage not in (1, 2):
            raise ValueError(f'stage must be 1 or 2, got {stage}.')
        self.stage = stage
        self.perceptual_weight = perceptual_weight
        self.adversarial_weight = adversarial_weight
        self.disc_start_iter = disc_start_iter
        if stage == 2:
            if perceptual_loss is None or discriminator is None:
                raise ValueError(
                    'BSQViT stage 2 needs perceptual_loss=dict(type='
                    "'PerceptualLoss', vgg_checkpoint=...) and discriminator="
                    "dict(type='PatchDiscriminator').")
            self.perceptual_loss = build_scoped(MODELS, perceptual_loss)
            self.discriminator = build_scoped(MODELS, discriminator)
            for frozen in self._frozen_in_stage2():
                frozen.requires_grad_(False)

    def _build_quantizer(self, quantizer: dict, quant_embed: str,
                         post_quant_dims: Optional[int],
                         decoder: dict) -> int:
        """Build the quantizer (and the QLIP MLPs); return the decoder's
        input width."""
        if quant_embed not in QUANT_EMBEDS:
            raise ValueError(f'quant_embed must be one of {QUANT_EMBEDS}, '
                             f'got {quant_embed!r}.')
        dims = self.encoder.embed_dims
        self.quant_embed = self.quant_embed_post = None
        if quant_embed == 'linear':
            self.quantizer = build_scoped(MODELS, dict(quantizer,
                                                       in_dims=dims))
            return dims
        self.quantizer = build_scoped(MODELS, dict(quantizer, in_dims=None))
        code_dims = self.quantizer.code_dims
        if quant_embed == 'identity':
            if code_dims != dims:
                raise ValueError(
                    f"quant_embed='identity' needs code_dims == the encoder "
                    f'width ({dims}), got {code_dims}.')
            return dims
        if post_quant_dims is None:
            post_quant_dims = resolve_arch(decoder.get('arch', 'base'),
                                           VIT_ARCHS, 'ViTEncoder')[
                                               'embed_dims']
        self.quant_embed = nn.Sequential(
            nn.Linear(dims, dims), nn.GELU(), nn.Linear(dims, code_dims))
        self.quant_embed_post = nn.Sequential(
            nn.Linear(code_dims, post_quant_dims), nn.GELU(),
            nn.Linear(post_quant_dims, post_quant_dims))
        return post_quant_dims

    # ------------------------------------------------------------------
    def _quantize(self, patches: torch.Tensor) -> QuantizerOutput:
        """Quantizer output of ``(B, N, C)`` encoder patch tokens."""
        if self.quant_embed is not None:
            patches = self.quant_embed(patches)
        return self.quantizer(patches)

    def _encode(self, images: torch.Tensor
                ) -> Tuple[torch.Tensor, QuantizerOutput, Tuple[int, int]]:
        """Unquantized CLS, quantizer output of the patches, patch grid."""
        check_raw_pixels(images, type(self).__name__)
        tokens, grid = self.run_encoder(images)
        return tokens[:, 0], self._quantize(tokens[:, 1:]), grid

    def _pixels(self, quantized: torch.Tensor,
                grid: Tuple[int, int]) -> torch.Tensor:
        """Decode ``(B, h*w, C)`` quantized patches to normalised pixels."""
        if self.quant_embed_post is not None:
            quantized = self.quant_embed_post(quantized)
        batch = quantized.shape[0]
        code_map = quantized.transpose(1, 2).reshape(batch, -1, *grid)
        tokens, _ = self.decoder(code_map)
        patches = self.pixel_head(
            tokens[:, unwrap_ddp(self.decoder).num_extra_tokens:])
        p = unwrap_ddp(self.encoder).patch_size
        patches = patches.view(batch, *grid, 3, p, p)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(
            batch, 3, grid[0] * p, grid[1] * p)

    def _to_raw(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels * self.norm.std + self.norm.mean).clamp(0, 255)

    def _frozen_in_stage2(self) -> List[nn.Module]:
        modules = [self.encoder]
        if self.text_encoder is not None:
            modules += [self.text_encoder, self.image_proj, self.text_proj]
        return modules

    def train(self, mode: bool = True) -> 'BSQViT':
        """In stage 2 the frozen encoder stays in eval mode."""
        super().train(mode)
        if self.stage == 2:
            for module in self._frozen_in_stage2():
                module.eval()
        return self

    def optim_parts(self) -> Dict[str, nn.Module]:
        """Parts with their own optimizer (``MultiOptimWrapperConstructor``).
        """
        if self.stage != 2:
            raise RuntimeError('Only stage 2 trains separate parts; stage 1 '
                               'uses one optimizer.')
        parts = dict(quantizer=self.quantizer, decoder=self.decoder,
                     pixel_head=self.pixel_head)
        if self.quant_embed is not None:
            parts.update(quant_embed=self.quant_embed,
                         quant_embed_post=self.quant_embed_post)
        return dict(
            generator=nn.ModuleDict(parts),
            discriminator=self.discriminator)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` raw pixels to ``(B, h, w)`` int64 token ids
        (BSQ ids, big-endian bits as the official code)."""
        _, output, grid = self._encode(images)
        return output.indices.view(images.shape[0], *grid)

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings ``(B, embed_dims)`` of the contrastive
        space (projected unquantized CLS); needs a text tower."""
        self._check_aligned()
        check_raw_pixels(images, type(self).__name__)
        tokens, _ = self.run_encoder(images)
        return F.normalize(self.image_proj(tokens[:, 0]), dim=-1)

    @torch.no_grad()
    def embed_texts(self, text_ids: torch.Tensor,
                    text_padding_mask: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        """Unit text embeddings ``(B, embed_dims)`` of ``(B, L)`` token ids
        (``text_padding_mask`` True at padding)."""
        self._check_aligned()
        text = self._text_features(text_ids, text_padding_mask)
        return F.normalize(self.text_proj(text), dim=-1)

    def _check_aligned(self) -> None:
        if self.text_encoder is None:
            raise RuntimeError('This BSQViT has no text tower '
                               '(text_encoder=None): nothing is aligned.')

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, h, w)`` token ids to ``(B, 3, H, W)`` pixels in [0, 255]."""
        quantized = unwrap_ddp(self.quantizer).decode_indices(ids.flatten(1))
        return self._to_raw(self._pixels(quantized, tuple(ids.shape[1:])))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Encode and decode raw-pixel images (pixels in [0, 255])."""
        _, output, grid = self._encode(images)
        return self._to_raw(self._pixels(output.quantized, grid))

    # ------------------------------------------------------------------
    # Image-text embeddings (zero-shot classification, retrieval)
    # ------------------------------------------------------------------
    def _text_features(self, text_ids: torch.Tensor,
                       text_padding_mask: Optional[torch.Tensor] = None
                       ) -> torch.Tensor:
        """``(B, C_text)`` sentence features of the text tower."""
        if hasattr(self.text_encoder, 'forward_pooled'):
            return self.text_encoder.forward_pooled(text_ids,
                                                    text_padding_mask)
        return self.text_encoder.forward_sequence(
            text_ids=text_ids, text_padding_mask=text_padding_mask)[:, 0]

    def encode_image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """l2-normalised image embeddings ``(B, D)`` of raw-pixel images
        (the projected, unquantized CLS feature): :meth:`embed_images`."""
        return self.embed_images(images)

    def encode_text_embedding(
            self,
            text_ids: torch.Tensor,
            text_padding_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """l2-normalised text embeddings ``(B, D)`` of token ids (from the
        text tower's tokenizer, e.g. ``mmvlp.text.CLIPBPETokenizer`` for a
        converted QLIP model): :meth:`embed_texts`."""
        return self.embed_texts(text_ids, text_padding_mask)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """The dual-encoder interface of zero-shot classification and
        retrieval (with :meth:`encode_text` and ``logit_scale``, as
        ``BEiT3Retrieval``): :meth:`encode_image_embedding`."""
        return self.encode_image_embedding(images)

    def encode_text(self,
                    text_ids: torch.Tensor,
                    text_padding_mask: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        """The dual-encoder interface: :meth:`encode_text_embedding`."""
        return self.encode_text_embedding(text_ids, text_padding_mask)

    @torch.no_grad()
    def zero_shot_logits(self, images: torch.Tensor, text_ids: torch.Tensor,
                         text_padding_mask: Optional[torch.Tensor] = None
                         ) -> torch.Tensor:
        """``logit_scale.exp() * image_emb @ text_emb.T``: ``(B_img,
        B_text)`` image-to-text logits (CLIP's ``logits_per_image``)."""
        image = self.encode_image_embedding(images)
        text = self.encode_text_embedding(text_ids, text_padding_mask)
        return self.logit_scale.exp() * image @ text.t()

    # ------------------------------------------------------------------
    def loss(self,
             images: torch.Tensor,
             data_samples: Optional[list] = None) -> Dict[str, torch.Tensor]:
        """Stage-1 losses: reconstruction, quantizer entropy and, with a text
        tower and texts, contrastive alignment of the unquantized CLS.

        Args:
            images (Tensor): ``(B, 3, H, W)`` raw pixels.
            data_samples (list, optional): Items with ``text_ids`` (``(L,)``
                token ids, padded to one length) and optionally
                ``text_padding_mask`` (True at padding) for the alignment.
        """
        if self.stage == 2:
            losses, _ = self._stage2_losses(images, apply_adversarial=False)
            return losses
        text_ids, text_padding_mask = _texts(data_samples)
        cls_token, output, grid = self._encode(images)
        pixels = self._pixels(output.quantized, grid)
        target = self.norm(images)
        if self.recon_loss == 'l1':
            loss_recon = F.l1_loss(pixels, target)
        else:
            loss_recon = F.mse_loss(pixels, target)
        losses = dict(loss_recon=loss_recon, loss_quant=output.loss)
        losses.update({k: v.detach().float() for k, v in output.stats.items()})
        if self.text_encoder is not None and text_ids is not None:
            text = self._text_features(text_ids, text_padding_mask)
            loss_con = contrastive_loss(
                F.normalize(self.image_proj(cls_token), dim=-1),
                F.normalize(self.text_proj(text), dim=-1),
                self.logit_scale)
            weight = self._balance_weight(loss_recon, loss_con)
            losses.update(loss_contrastive=weight * loss_con,
                          contrastive_weight=weight.detach(),
                          contrastive_raw=loss_con.detach())
        return losses

    def _balance_weight(self, loss_recon: torch.Tensor,
                        loss_con: torch.Tensor) -> torch.Tensor:
        """The contrastive weight: fixed, or the gradient-norm ratio
        measured now or at an earlier step (see ``balance_interval``)."""
        fixed = loss_con.new_tensor(self.contrastive_weight)
        if not self.balance_by_grad:
            return fixed
        stored = getattr(self, 'balance_weight', None)
        if not (self.training and loss_con.requires_grad):
            if stored is None:
                return fixed
            return fixed * torch.where(stored > 0, stored, 1.)
        due = self._balance_calls % self.balance_interval == 0
        self._balance_calls += 1
        if stored is None:
            return fixed * self._gradient_ratio(loss_recon, loss_con)
        if due:
            ratio = self._gradient_ratio(loss_recon, loss_con)
            momentum = torch.where(stored > 0, self.balance_momentum, 0.)
            stored.copy_(momentum * stored + (1 - momentum) * ratio)
        return fixed * stored.detach().clone()

    def _gradient_ratio(self, loss_recon: torch.Tensor,
                        loss_con: torch.Tensor) -> torch.Tensor:
        """``||d recon / d W|| / ||d con / d W||`` on the encoder's last
        block's FFN output weight (two partial backward passes)."""
        weight = unwrap_ddp(self.encoder).layers[-1].ffn.fc2.weight
        grad_recon, = torch.autograd.grad(loss_recon, weight,
                                          retain_graph=True)
        grad_con, = torch.autograd.grad(loss_con, weight, retain_graph=True)
        ratio = grad_recon.norm() / (grad_con.norm() + 1e-8)
        return ratio.clamp(max=self.max_balance_weight).detach()

    # ------------------------------------------------------------------
    # Stage 2: frozen encoder, perceptual + adversarial decoder training
    # ------------------------------------------------------------------
    @staticmethod
    def _to_unit(raw: torch.Tensor) -> torch.Tensor:
        return raw / 127.5 - 1.

    def _stage2_losses(self, images: torch.Tensor, apply_adversarial: bool
                       ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Generator losses and the (unclamped) raw-pixel reconstruction."""
        check_raw_pixels(images, type(self).__name__)
        with torch.no_grad():
            tokens, grid = self.run_encoder(images)
        output = self._quantize(tokens[:, 1:])
        pixels = self._pixels(output.quantized, grid)
        recon = pixels * self.norm.std + self.norm.mean
        if self.recon_loss == 'l1':
            loss_recon = F.l1_loss(pixels, self.norm(images))
        else:
            loss_recon = F.mse_loss(pixels, self.norm(images))
        loss_perceptual = self.perceptual_weight * self.perceptual_loss(
            recon, images)
        losses = dict(loss_recon=loss_recon, loss_quant=output.loss,
                      loss_perceptual=loss_perceptual)
        if apply_adversarial:
            loss_g = hinge_g_loss(self.discriminator(self._to_unit(recon)))
            weight = self.adversarial_weight * self._adaptive_weight(
                loss_recon + loss_perceptual, loss_g)
            losses.update(loss_adversarial=weight * loss_g,
                          adversarial_weight=weight.detach())
        return losses, recon

    def _adaptive_weight(self, loss_rec: torch.Tensor,
                         loss_adv: torch.Tensor) -> torch.Tensor:
        """``||d rec / d W|| / ||d adv / d W||`` on the pixel head (VQGAN)."""
        head = unwrap_ddp(self.pixel_head)
        weight = (head[-1] if isinstance(head, nn.Sequential) else head).weight
        grad_rec, = torch.autograd.grad(loss_rec, weight, retain_graph=True)
        grad_adv, = torch.autograd.grad(loss_adv, weight, retain_graph=True)
        ratio = grad_rec.norm() / (grad_adv.norm() + 1e-8)
        return ratio.clamp(max=1e4).detach()

    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        """Stage 1: mmengine's single-optimizer step. Stage 2: a generator
        step (quantizer + decoder), then a discriminator step (hinge loss)
        from ``disc_start_iter`` on. Under DDP use
        ``model_wrapper_cfg=dict(type='MMSeparateDistributedDataParallel')``.
        """
        if self.stage == 1:
            return super().train_step(data, optim_wrapper)
        iteration = MessageHub.get_current_instance().get_info('iter', 0)
        adversarial = iteration >= self.disc_start_iter
        images = self.data_preprocessor(data, True)['inputs']
        generator = optim_wrapper['generator']
        with generator.optim_context(self):
            losses, recon = self._stage2_losses(images, adversarial)
        loss, log_vars = self.parse_losses(losses)
        generator.update_params(loss)
        if adversarial:
            discriminator = optim_wrapper['discriminator']
            with discriminator.optim_context(self.discriminator):
                loss_disc = hinge_d_loss(
                    self.discriminator(self._to_unit(images.float())),
                    self.discriminator(self._to_unit(recon.detach())))
            discriminator.update_params(loss_disc)
            log_vars['loss_disc'] = loss_disc.detach()
        return log_vars


def _texts(data_samples: Optional[list]
           ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Stack ``text_ids`` / ``text_padding_mask`` of the data samples."""
    if not data_samples or _field(data_samples[0], 'text_ids') is None:
        return None, None
    text_ids = torch.stack([_field(s, 'text_ids') for s in data_samples])
    masks = [_field(s, 'text_padding_mask') for s in data_samples]
    padding = None if masks[0] is None else torch.stack(masks).bool()
    return text_ids, padding


def _field(sample, name: str):
    if isinstance(sample, dict):
        return sample.get(name)
    return getattr(sample, name, None)
