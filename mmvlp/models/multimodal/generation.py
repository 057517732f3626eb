"""Greedy and beam-search decoding for BEiT-3 captioning.

BEiT-3 generates a caption as a masked language model under a prefix-causal
mask: with ``<s> w1 ... w(t-1)`` decoded, the next input is ``[w(t-1),
[MASK]]`` and the prediction at the mask position is ``w(t)``; the keys and
values of the mask are not kept (the official decoding loop). A *stepper*
hides how the logits are computed:

* :class:`CachedSteps` keeps every layer's keys and values
  (:meth:`~mmvlp.models.BEiT3.forward_cached`): each step encodes 2 tokens;
* :class:`FullSteps` re-encodes the image and the whole prefix every step
  (the reference the cached path is tested against).

:func:`greedy_search` and :func:`beam_search` work with either.
"""
from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F

#: ``(hidden states (B, C)) -> logits (B, V)``.
HeadFn = Callable[[torch.Tensor], torch.Tensor]


def prefix_causal_mask(num_image_tokens: int, num_text_tokens: int,
                       device=None) -> torch.Tensor:
    """``(N, N)`` boolean mask, True where a query may NOT attend: image
    tokens see all image tokens, text tokens see all image tokens and the
    text tokens up to themselves (BEiT-3 captioning).

    Args:
        num_image_tokens (int): Image tokens (CLS included), first.
        num_text_tokens (int): Text tokens, after them.
        device: Device of the mask.
    """
    total = num_image_tokens + num_text_tokens
    index = torch.arange(total, device=device)
    allowed = (index[None, :] < num_image_tokens) | (
        (index[:, None] >= num_image_tokens) &
        (index[None, :] <= index[:, None]))
    return ~allowed


class CachedSteps:
    """Decoding steps with cached keys and values.

    Args:
        backbone (BEiT3): The encoder.
        head (callable): Hidden states ``(B, C)`` -> logits ``(B, V)``.
        bos_id (int): Start token.
        mask_id (int): The mask token (the backbone's
            ``text_mask_token_id``).
    """

    def __init__(self, backbone, head: HeadFn, bos_id: int,
                 mask_id: int) -> None:
        self.backbone, self.head = backbone, head
        self.bos_id, self.mask_id = bos_id, mask_id
        self.cache = None

    def _run(self, ids: torch.Tensor, images=None) -> torch.Tensor:
        hidden, cache = self.backbone.forward_cached(
            ids, images=images, cache=self.cache)
        self.cache = cache.trim(cache.length - 1)  # drop the mask token
        return self.head(hidden[:, -1])

    def start(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the first word given the image."""
        self.cache = None
        ids = images.new_tensor([self.bos_id, self.mask_id],
                                dtype=torch.long).expand(images.shape[0], 2)
        return self._run(ids, images)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of the next word after ``tokens`` ``(B,)``."""
        ids = torch.stack([tokens, torch.full_like(tokens, self.mask_id)], 1)
        return self._run(ids)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the rows ``index`` (beam search)."""
        self.cache = self.cache.index_select(index)


class FullSteps:
    """Decoding steps that re-encode the whole sequence each time (no
    cache); the same interface and results as :class:`CachedSteps`."""

    def __init__(self, backbone, head: HeadFn, bos_id: int,
                 mask_id: int) -> None:
        self.backbone, self.head = backbone, head
        self.bos_id, self.mask_id = bos_id, mask_id

    def _logits(self) -> torch.Tensor:
        mask = torch.full_like(self.prefix[:, :1], self.mask_id)
        ids = torch.cat([self.prefix, mask], 1)
        output, _ = self.backbone.encode(images=self.images, text_ids=ids,
                                         attn_mask=self._mask(ids.shape[1]))
        return self.head(output.hidden_states[:, -1])

    def _mask(self, num_text: int) -> torch.Tensor:
        grid = self.images.shape[-2:]
        patch = self.backbone.patch_size
        num_image = (grid[0] // patch) * (grid[1] // patch) + 1
        return prefix_causal_mask(num_image, num_text, self.images.device)

    def start(self, images: torch.Tensor) -> torch.Tensor:
        self.images = images
        self.prefix = torch.full((images.shape[0], 1), self.bos_id,
                                 dtype=torch.long, device=images.device)
        return self._logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.prefix = torch.cat([self.prefix, tokens[:, None]], 1)
        return self._logits()

    def reorder(self, index: torch.Tensor) -> None:
        self.images = self.images.index_select(0, index)
        self.prefix = self.prefix.index_select(0, index)


@torch.no_grad()
def greedy_search(steps, images: torch.Tensor, max_words: int,
                  eos_id: int) -> List[List[int]]:
    """The most likely next word at every step, until ``</s>``.

    Args:
        steps (CachedSteps | FullSteps): The stepper.
        images (Tensor): ``(B, 3, H, W)``.
        max_words (int): Longest caption in tokens (without ``<s>`` /
            ``</s>``).
        eos_id (int): End token.

    Returns:
        list[list[int]]: The words of each caption.
    """
    batch = images.shape[0]
    logits = steps.start(images)
    words: List[List[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    for position in range(max_words + 1):
        tokens = logits.argmax(-1)
        for row in range(batch):
            if done[row]:
                continue
            if position == max_words or int(tokens[row]) == eos_id:
                done[row] = True
            else:
                words[row].append(int(tokens[row]))
        if all(done):
            break
        logits = steps.step(tokens)
    return words


def _add_hypothesis(hypotheses: List[Tuple[float, List[int]]],
                    words: List[int], score: float, keep: int) -> None:
    hypotheses.append((score, words))
    hypotheses.sort(key=lambda h: -h[0])
    del hypotheses[keep:]


@torch.no_grad()
def beam_search(steps,
                images: torch.Tensor,
                max_words: int,
                eos_id: int,
                num_beams: int = 3,
                length_penalty: float = 0.6,
                early_stopping: bool = False) -> List[List[int]]:
    """Beam search with a length penalty.

    A finished caption of ``n`` words with log-probability ``s`` (``</s>``
    included) scores ``s / (n + 1) ** length_penalty`` (``<s>`` counted, as
    the official code). A sentence is done when ``num_beams`` captions are
    finished and (unless ``early_stopping``) none of the running beams can
    beat the worst of them at the current length; captions reaching
    ``max_words`` are closed with ``</s>``. With ``num_beams=1`` the result
    equals :func:`greedy_search`.

    Args:
        steps (CachedSteps | FullSteps): The stepper.
        images (Tensor): ``(B, 3, H, W)``.
        max_words (int): Longest caption (without ``<s>`` / ``</s>``).
        eos_id (int): End token.
        num_beams (int): Beams per image.
        length_penalty (float): Exponent of the length normalisation.
        early_stopping (bool): Stop a sentence as soon as ``num_beams``
            captions are finished.

    Returns:
        list[list[int]]: The words of the best caption of each image.
    """
    if num_beams < 1:
        raise ValueError(f'num_beams must be >= 1, got {num_beams}.')
    batch, beams = images.shape[0], num_beams
    logits = steps.start(images.repeat_interleave(beams, 0))
    vocab = logits.shape[-1]
    if vocab < 2 * beams:
        raise ValueError(f'A vocabulary of {vocab} is too small for '
                         f'{beams} beams.')
    device = logits.device
    beam_scores = torch.zeros(batch, beams, device=device)
    beam_scores[:, 1:] = float('-inf')  # all beams start identical
    beam_words: List[List[int]] = [[] for _ in range(batch * beams)]
    hypotheses: List[List[Tuple[float, List[int]]]] = [
        [] for _ in range(batch)]
    done = [False] * batch
    for position in range(max_words + 1):
        length = position + 1  # <s> and the words so far
        norm = length**length_penalty
        logprobs = F.log_softmax(logits.float(), -1).view(batch, beams, -1)
        if position == max_words:  # close every running beam with </s>
            final = beam_scores + logprobs[..., eos_id]
            for row in range(batch):
                for beam in range(beams):
                    score = float(final[row, beam])
                    if not done[row] and score > float('-inf'):
                        _add_hypothesis(hypotheses[row],
                                        beam_words[row * beams + beam],
                                        score / norm, beams)
            break
        candidates = (beam_scores[..., None] + logprobs).view(batch, -1)
        top_scores, top_index = candidates.topk(2 * beams, dim=1)
        next_scores, next_tokens, sources = [], [], []
        for row in range(batch):
            chosen = []
            if not done[row]:
                for score, index in zip(top_scores[row].tolist(),
                                        top_index[row].tolist()):
                    beam, token = divmod(index, vocab)
                    source = row * beams + beam
                    if score == float('-inf'):
                        break
                    if token == eos_id:
                        _add_hypothesis(hypotheses[row], beam_words[source],
                                        score / norm, beams)
                    else:
                        chosen.append((score, token, source))
                    if len(chosen) == beams:
                        break
                finished = hypotheses[row]
                done[row] = len(finished) >= beams and (
                    early_stopping or not chosen or
                    finished[-1][0] >= chosen[0][0] / norm)
            if done[row] or not chosen:
                chosen = []
            # Rows that are done (or short of beams) carry dead beams.
            filler = (float('-inf'), eos_id,
                      chosen[-1][2] if chosen else row * beams)
            chosen += [filler] * (beams - len(chosen))
            for score, token, source in chosen:
                next_scores.append(score)
                next_tokens.append(token)
                sources.append(source)
        if all(done):
            break
        index = torch.tensor(sources, device=device)
        beam_scores = torch.tensor(next_scores, device=device).view(
            batch, beams)
        beam_words = [beam_words[s] + [t]
                      for s, t in zip(sources, next_tokens)]
        steps.reorder(index)
        logits = steps.step(torch.tensor(next_tokens, device=device))
    return [hyps[0][1] if hyps else [] for hyps in hypotheses]


__all__ = ['prefix_causal_mask', 'CachedSteps', 'FullSteps',
           'greedy_search', 'beam_search']
