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
             targets: torch.Tensor, return_metrics: bool = False
             ) -> Tuple[torch.Tensor, ...]:
        """Cross-entropy and accuracy at the masked positions.

        Args:
            hidden (Tensor): ``(B, N, C)`` hidden states.
            mask (Tensor): ``(B, N)`` bool, True where a token is predicted.
            targets (Tensor): ``(B, N)`` token ids.
            return_metrics (bool): Also return a (here empty) dict of further
                metrics, as :class:`FactorizedTokenHead` does.

        Returns:
            tuple: Mean loss and accuracy (%) over the masked positions; both
            0 (with a graph for the loss) when nothing is masked.
        """
        result = self._loss(hidden, mask, targets)
        return result + ({},) if return_metrics else result

    def _loss(self, hidden: torch.Tensor, mask: torch.Tensor,
              targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
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


MAX_FACTORIZED_BITS = 62
MAX_GROUP_BITS = 16


@MODELS.register_module()
class FactorizedTokenHead(nn.Module):
    """Masked-token prediction for a vocabulary of binary codes (BSQ/QLIP):
    the ``L`` bits of a ``2**L`` id, predicted per bit or per group of bits
    instead of by one ``2**L``-way classifier.

    Ids are read big-endian, as BSQ writes them (bit 0, the most significant,
    is code dimension 0): group ``g`` holds dims ``[g s, (g + 1) s)`` and its
    id is their big-endian value. With ``group_size == 1`` each bit gets one
    logit and a binary cross-entropy; otherwise each of the ``G = L / s``
    groups gets a ``2**s``-way softmax and a cross-entropy. A 2**18-way
    linear head at width 768 has 201M weights; this one has
    ``768 * G * 2**s`` (18 bits: 13.8k per bit, 786k with ``s = 9``).

    Args:
        in_dims (int): Hidden width.
        num_bits (int): ``L``, the code width (vocabulary ``2**L``).
        group_size (int): ``s``, bits per softmax group; 1 = per-bit BCE.
            Must divide ``L``; at most 16.
        loss_reduction (str): ``'mean'`` (default): mean over groups (bits)
            and tokens; ``'sum'``: sum over groups, mean over tokens (the
            token's negative log-likelihood under the factorised model).
        init_std (float): Std of the truncated-normal weight init.
    """

    def __init__(self,
                 in_dims: int,
                 num_bits: int,
                 group_size: int = 1,
                 loss_reduction: str = 'mean',
                 init_std: float = .02) -> None:
        super().__init__()
        if not 1 <= num_bits <= MAX_FACTORIZED_BITS:
            raise ValueError(f'num_bits must be in [1, '
                             f'{MAX_FACTORIZED_BITS}], got {num_bits}.')
        if not 1 <= group_size <= MAX_GROUP_BITS or num_bits % group_size:
            raise ValueError(
                f'group_size must divide num_bits ({num_bits}) and be in '
                f'[1, {MAX_GROUP_BITS}], got {group_size}.')
        if loss_reduction not in ('mean', 'sum'):
            raise ValueError(f"loss_reduction must be 'mean' or 'sum', got "
                             f'{loss_reduction!r}.')
        self.num_bits = num_bits
        self.group_size = group_size
        self.num_groups = num_bits // group_size
        self.loss_reduction = loss_reduction
        outputs = num_bits if group_size == 1 else \
            self.num_groups * 2**group_size
        self.fc = nn.Linear(in_dims, outputs)
        nn.init.trunc_normal_(self.fc.weight, std=init_std)
        nn.init.zeros_(self.fc.bias)
        shifts = torch.arange(self.num_groups - 1, -1, -1) * group_size
        self.register_buffer('shifts', shifts, persistent=False)

    @property
    def vocab_size(self) -> int:
        """int: ``2**num_bits``."""
        return 2**self.num_bits

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of ``(N, C)`` hidden states: ``(N, L)`` per bit, or
        ``(N, G, 2**s)`` per group."""
        logits = self.fc(hidden)
        if self.group_size == 1:
            return logits
        return logits.view(*logits.shape[:-1], self.num_groups,
                           2**self.group_size)

    def group_targets(self, ids: torch.Tensor) -> torch.Tensor:
        """``(..., G)`` big-endian group ids of token ids (a bit each when
        ``group_size == 1``)."""
        mask = 2**self.group_size - 1
        return (ids.long()[..., None] >> self.shifts) & mask

    def predict(self, hidden: torch.Tensor) -> torch.Tensor:
        """Most likely token ids ``(N,)`` of ``(N, C)`` hidden states (the
        factorised model's mode: each group's argmax)."""
        return self.combine(self.predict_groups(self(hidden)))

    def predict_groups(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, G)`` predicted group ids (bits) of :meth:`forward`'s
        logits."""
        if self.group_size == 1:
            return (logits > 0).long()
        return logits.argmax(-1)

    def combine(self, groups: torch.Tensor) -> torch.Tensor:
        """Token ids of ``(..., G)`` group ids."""
        return (groups.long() << self.shifts).sum(-1)

    def bit_accuracy(self, groups: torch.Tensor,
                     target_groups: torch.Tensor) -> torch.Tensor:
        """``(L,)`` share of correct bits per code dimension (dimension 0
        first) of predicted vs true group ids ``(N, G)``."""
        bits = torch.arange(self.group_size - 1, -1, -1,
                            device=groups.device)
        pred = (groups[..., None] >> bits) & 1
        true = (target_groups[..., None] >> bits) & 1
        return (pred == true).flatten(-2).float().mean(0)

    def _loss(self, logits: torch.Tensor,
              target_groups: torch.Tensor) -> torch.Tensor:
        if self.group_size == 1:
            per = F.binary_cross_entropy_with_logits(
                logits.float(), target_groups.float(), reduction='none')
        else:
            per = F.cross_entropy(logits.float().flatten(0, 1),
                                  target_groups.flatten(),
                                  reduction='none').view_as(target_groups)
        if self.loss_reduction == 'sum':
            return per.sum(-1).mean()
        return per.mean()

    def loss(self,
             hidden: torch.Tensor,
             mask: torch.Tensor,
             targets: torch.Tensor,
             return_metrics: bool = False):
        """Loss and exact-token accuracy at the masked positions.

        Args:
            hidden (Tensor): ``(B, N, C)`` hidden states.
            mask (Tensor): ``(B, N)`` bool, True where a token is predicted.
            targets (Tensor): ``(B, N)`` token ids in ``[0, 2**L)``.
            return_metrics (bool): Also return ``dict(acc_bit=...,
            acc_group=...)``: mean bit accuracy and (with groups of more
            than one bit) mean group accuracy, in %.

        Returns:
            tuple: ``(loss, accuracy)`` (exact token, %) and, with
            ``return_metrics``, the metrics dict; zeros when nothing is
            masked.
        """
        if hidden.shape[:2] != mask.shape or mask.shape != targets.shape:
            raise ValueError(
                f'hidden {tuple(hidden.shape)}, mask {tuple(mask.shape)} and '
                f'targets {tuple(targets.shape)} do not line up.')
        selected = targets[mask]
        if selected.numel() and (selected.min() < 0 or
                                 selected.max() >= self.vocab_size):
            raise ValueError(
                f'Target ids must be in [0, 2**{self.num_bits}); got '
                f'[{int(selected.min())}, {int(selected.max())}]. Check '
                'that num_bits matches the tokenizer\'s code width.')
        metrics = {}
        if not selected.numel():
            zero = hidden.sum() * 0.
            result = (zero, zero.detach())
            if return_metrics:
                metrics = dict(acc_bit=zero.detach())
                if self.group_size > 1:
                    metrics['acc_group'] = zero.detach()
                return result + (metrics,)
            return result
        logits = self(hidden[mask])
        target_groups = self.group_targets(selected)
        loss = self._loss(logits, target_groups)
        with torch.no_grad():
            groups = self.predict_groups(logits)
            correct = groups == target_groups
            accuracy = correct.all(-1).float().mean() * 100
            if return_metrics:
                metrics['acc_bit'] = self.bit_accuracy(
                    groups, target_groups).mean() * 100
                if self.group_size > 1:
                    metrics['acc_group'] = correct.float().mean() * 100
        if return_metrics:
            return loss, accuracy, metrics
        return loss, accuracy
