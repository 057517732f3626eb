"""Prediction of discrete tokens at masked positions (MIM and MLM)."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmvlp.registry import MODELS
from mmvlp.utils.checks import check_on_device


@MODELS.register_module()
class MaskedTokenHead(nn.Module):
    """A linear classifier over a token vocabulary, applied only to the
    hidden states of masked positions.

    Args:
        in_dims (int): Hidden width.
        vocab_size (int): Number of classes (visual codes or text ids).
        init_std (float): Std of the truncated-normal weight init.
    """

    def __init__(self, in_dims: int, vocab_size: int,
                 init_std: float = .02) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.fc = nn.Linear(in_dims, vocab_size)
        nn.init.trunc_normal_(self.fc.weight, std=init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, vocab_size)`` of ``(N, C)`` hidden states."""
        return self.fc(hidden)

    def loss(self, hidden: torch.Tensor, mask: torch.Tensor,
             targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy at the masked positions.

        Args:
            hidden (Tensor): ``(B, N, C)`` hidden states.
            mask (Tensor): ``(B, N)`` bool, True where a token is predicted.
            targets (Tensor): ``(B, N)`` token ids.

        Returns:
            tuple: Mean loss and accuracy (%) over the masked positions; both
            0 (with a graph for the loss) when nothing is masked.
        """
        if hidden.shape[:2] != mask.shape or mask.shape != targets.shape:
            raise ValueError(
                f'hidden {tuple(hidden.shape)}, mask {tuple(mask.shape)} and '
                f'targets {tuple(targets.shape)} do not line up.')
        # One host sync: the number of masked positions (nonzero); the
        # range check of the ids runs on the device.
        index = mask.reshape(-1).nonzero().squeeze(1)
        if not index.numel():
            zero = hidden.sum() * 0.
            return zero, zero.detach()
        selected = targets.reshape(-1)[index]
        low, high = selected.aminmax()
        check_on_device(
            (low >= 0) & (high < self.vocab_size),
            lambda: f'Target ids must be in [0, {self.vocab_size}); got '
            f'[{int(low)}, {int(high)}]. Check that the tokenizer vocabulary '
            'matches the head.',
            f'Target ids must be in [0, {self.vocab_size}): check that the '
            'tokenizer vocabulary matches the head.')
        logits = self(hidden.reshape(-1, hidden.shape[-1])[index])
        loss = F.cross_entropy(logits.float(), selected)
        accuracy = (logits.argmax(-1) == selected).float().mean() * 100
        return loss, accuracy.detach()
