"""Routing of tokens to modality experts.

A Multiway sequence is ``[image tokens | text tokens]``. Its routing is one
integer, ``split``: the number of leading image tokens. ``split == N`` means an
image-only sequence, ``split == 0`` a text-only one. The backbone computes it
once per call and passes it to every layer, so no module keeps routing state.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn

VISION = 'vision'
TEXT = 'text'
VL = 'vl'


class MultiwayExperts(nn.Module):
    """One copy of a module per modality, applied by ``split``.

    Image tokens (``x[:, :split]``) go to ``experts['vision']`` and text tokens
    (``x[:, split:]``) to ``experts['text']``. A mixed sequence is cut with one
    ``split`` (whose backward is one ``cat``; slicing twice would cost two
    zero-filled full-size gradients) and the outputs joined with one ``cat``.
    When a ``'vl'`` expert exists and ``fuse`` is set, a mixed sequence goes
    through it whole (the vision-language FFN of the top layers).

    Args:
        experts (dict[str, nn.Module]): Modules keyed by ``'vision'``,
            ``'text'`` and optionally ``'vl'``. Each maps ``(..., C_in)`` to
            ``(..., C_out)``.
    """

    def __init__(self, experts: Dict[str, nn.Module]) -> None:
        super().__init__()
        unknown = set(experts) - {VISION, TEXT, VL}
        if unknown or VISION not in experts or TEXT not in experts:
            raise ValueError(
                f'MultiwayExperts needs the keys {VISION!r} and {TEXT!r} '
                f'(and optionally {VL!r}), got {sorted(experts)}.')
        for name, module in experts.items():
            self.add_module(name, module)

    @property
    def has_vl(self) -> bool:
        """Whether a vision-language expert exists."""
        return hasattr(self, VL)

    def forward(self,
                x: torch.Tensor,
                split: int,
                fuse: bool = False) -> torch.Tensor:
        """Route ``x`` of shape ``(B, N, C_in)`` to the experts.

        Args:
            x (Tensor): The token sequence, image tokens first.
            split (int): Number of leading image tokens.
            fuse (bool): Send a mixed sequence through the ``'vl'`` expert.

        Returns:
            Tensor: ``(B, N, C_out)``.
        """
        parts = split_modalities(x, split)
        if len(parts) > 1 and fuse and self.has_vl:
            return self.vl(x)
        if len(parts) == 1:
            return getattr(self, parts[0][0])(x)
        return torch.cat([getattr(self, kind)(part) for kind, part in parts],
                         dim=1)

    def expert(self, kind: str, fuse: bool = False) -> nn.Module:
        """The expert of tokens of ``kind`` (``'vision'`` or ``'text'``);
        the ``'vl'`` expert instead when ``fuse`` and it exists."""
        if fuse and self.has_vl:
            return self.vl
        return getattr(self, kind)


def split_modalities(x: torch.Tensor,
                     split: int) -> Tuple[Tuple[str, torch.Tensor], ...]:
    """Cut a ``(B, N, C)`` sequence into its modalities.

    Args:
        x (Tensor): The token sequence, image tokens first.
        split (int): Number of leading image tokens.

    Returns:
        tuple: ``((kind, part), ...)`` in sequence order, kind ``'vision'``
        or ``'text'``; one entry (``x`` itself) for a one-modality sequence,
        else two views made by one ``torch.split``.
    """
    num_tokens = x.shape[1]
    if split >= num_tokens:
        return ((VISION, x), )
    if split <= 0:
        return ((TEXT, x), )
    image, text = x.split([split, num_tokens - split], dim=1)
    return ((VISION, image), (TEXT, text))


def expert_of(module: nn.Module, kind: str, fuse: bool = False) -> nn.Module:
    """What tokens of ``kind`` go through: a shared module itself, or the
    expert of a :class:`MultiwayExperts` (see :meth:`MultiwayExperts.expert`).

    Token-wise modules (norms, linear layers, FFNs) applied per modality
    this way give what :func:`route` gives on the whole sequence.
    """
    if isinstance(module, MultiwayExperts):
        return module.expert(kind, fuse)
    return module


def multiway_or_shared(module_fn, multiway: bool,
                       vl: bool = False) -> nn.Module:
    """Build one shared module or one copy per modality.

    Args:
        module_fn (callable): Builds a fresh module on each call.
        multiway (bool): Build experts instead of a single module.
        vl (bool): Also build a vision-language expert.

    Returns:
        nn.Module: The module, or a :class:`MultiwayExperts`.
    """
    if not multiway:
        return module_fn()
    experts = {VISION: module_fn(), TEXT: module_fn()}
    if vl:
        experts[VL] = module_fn()
    return MultiwayExperts(experts)


def route(module: nn.Module,
          x: torch.Tensor,
          split: int,
          fuse: bool = False) -> torch.Tensor:
    """Apply a shared module or a :class:`MultiwayExperts` uniformly.

    Args:
        module (nn.Module): A plain module (shared by all tokens) or experts.
        x (Tensor): ``(B, N, C)`` tokens, image tokens first.
        split (int): Number of leading image tokens.
        fuse (bool): See :meth:`MultiwayExperts.forward`.

    Returns:
        Tensor: The module's output.
    """
    if isinstance(module, MultiwayExperts):
        return module(x, split, fuse)
    return module(x)
