"""Losses for the pixel decoder of a tokenizer: perceptual and adversarial.

Neither network is downloaded: the perceptual loss needs VGG-16 weights the
user supplies and refuses to run without them.
"""
import os.path as osp
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import vgg16

from mmvlp.registry import MODELS
from mmvlp.compat.torch_load import safe_torch_load

# Indices in torchvision's vgg16().features after relu1_2 .. relu5_3.
VGG16_TAPS = (3, 8, 15, 22, 29)
VGG_MEAN = (0.485, 0.456, 0.406)
VGG_STD = (0.229, 0.224, 0.225)


@MODELS.register_module()
class PerceptualLoss(nn.Module):
    """Distance between VGG-16 features of two images (LPIPS-style).

    Features at relu1_2 ... relu5_3 are unit-normalised over channels; the
    squared differences are averaged over space and (with an LPIPS linear
    calibration, when given) weighted per channel, then summed over layers.

    Args:
        vgg_checkpoint (str): torchvision ``vgg16`` state dict (e.g.
            ``vgg16-397923af.pth``). Required: without it the loss would
            measure random features.
        lpips_checkpoint (str, optional): LPIPS linear layers
            (``lin{0..4}.model.1.weight``) to weight the channels.
    """

    def __init__(self, vgg_checkpoint: Optional[str] = None,
                 lpips_checkpoint: Optional[str] = None) -> None:
        super().__init__()
        if not vgg_checkpoint or not osp.isfile(vgg_checkpoint):
            raise FileNotFoundError(
                'PerceptualLoss needs VGG-16 weights: set vgg_checkpoint to a '
                'torchvision vgg16 state dict (nothing is downloaded '
                f'automatically); got {vgg_checkpoint!r}. Refusing to train '
                'with a random network.')
        state = safe_torch_load(vgg_checkpoint, 'cpu')
        state = state.get('state_dict', state)
        features = {k[len('features.'):]: v for k, v in state.items()
                    if k.startswith('features.')}
        if not features:
            raise ValueError(f'{vgg_checkpoint} has no features.* keys; it '
                             'is not a torchvision vgg16 state dict.')
        network = vgg16(weights=None).features.eval()
        network.load_state_dict(features)
        network.requires_grad_(False)
        # Not a registered submodule: the user's VGG weights are an input of
        # the loss, not part of the model, so checkpoints do not carry them.
        object.__setattr__(self, '_vgg', [network])
        self.register_buffer('mean', torch.tensor(VGG_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(VGG_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.channel_weights = None
        if lpips_checkpoint is not None:
            lpips = safe_torch_load(lpips_checkpoint, 'cpu')
            self.channel_weights = [
                lpips[f'lin{i}.model.1.weight'].flatten()
                for i in range(len(VGG16_TAPS))
            ]

    @property
    def features(self) -> nn.Sequential:
        """The frozen VGG-16 feature extractor (kept in eval mode)."""
        return self._vgg[0]

    def _taps(self, images: torch.Tensor) -> Sequence[torch.Tensor]:
        network = self.features
        if next(network.parameters()).device != images.device:
            self._vgg[0] = network = network.to(images.device)
        x = (images / 255. - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(network):
            x = layer(x)
            if index in VGG16_TAPS:
                outputs.append(F.normalize(x, dim=1, eps=1e-10))
        return outputs

    def forward(self, pred: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """Mean perceptual distance of ``(B, 3, H, W)`` images in [0, 255]."""
        total = pred.new_zeros(())
        for index, (a, b) in enumerate(
                zip(self._taps(pred), self._taps(target.detach()))):
            diff = (a - b).pow(2)
            if self.channel_weights is not None:
                weights = self.channel_weights[index].to(diff)
                diff = diff * weights.view(1, -1, 1, 1)
                total = total + diff.sum(1).mean()
            else:
                total = total + diff.mean(1).mean()
        return total


@MODELS.register_module()
class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: strided 4x4 convolutions, one logit per patch.

    Args:
        in_channels (int): Image channels.
        base_channels (int): Width of the first layer (doubled per layer,
            up to 8x).
        num_layers (int): Strided layers.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64,
                 num_layers: int = 3) -> None:
        super().__init__()
        layers = [nn.Conv2d(in_channels, base_channels, 4, 2, 1),
                  nn.LeakyReLU(0.2, True)]
        channels = base_channels
        for index in range(1, num_layers + 1):
            out = base_channels * min(2**index, 8)
            stride = 2 if index < num_layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride, 1, bias=False),
                       nn.GroupNorm(min(32, out // 4), out),
                       nn.LeakyReLU(0.2, True)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, h, w)`` for images normalised to about [-1, 1]."""
        return self.layers(images)


def hinge_d_loss(real_logits: torch.Tensor,
                 fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator."""
    return (F.relu(1. - real_logits).mean() +
            F.relu(1. + fake_logits).mean()) / 2


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator."""
    return -fake_logits.mean()
