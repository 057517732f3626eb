"""Greedy and beam-search decoding for BEiT-3 captioning.

BEiT-3 generates a caption as a masked language model under a prefix-causal
mask: with ``<s> w1 ... w(t-1)`` decoded, the next input is ``[w(t-1),
[MASK]]`` and the prediction at the mask position is ``w(t)``; the keys and
values of the mask are not kept (the official decoding loop). A *stepper*
hides how the logits are computed:

* :class:`CachedSteps` keeps every layer's keys and values in a preallocated
  cache (:meth:`~mmvlp.models.BEiT3.forward_cached`): each step encodes 2
  tokens and writes their keys and values in place;
* :class:`FullSteps` re-encodes the image and the whole prefix every step
  (the reference the cached path is tested against).

:func:`beam_search` is the search of the official captioning evaluation
(unilm ``beit3/engine_for_finetuning.py``, ``CaptioningHandler.eval_batch``
with ``utils.BeamHypotheses``), also for ``num_beams=1``;
:func:`greedy_search` is plain greedy decoding that stops at the first
``</s>`` (an mmvlp option). Both keep their state on the device and read it
back once per step (whether every image is done) and once at the end.
"""
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

#: ``(hidden states (B, C)) -> logits (B, V)``.
HeadFn = Callable[[torch.Tensor], torch.Tensor]
#: Beams of a dead start (the official ``-1e9``, not ``-inf``).
DEAD_BEAM = -1e9
#: Candidates per beam that the official search looks at each step.
TOPN_PER_BEAM = 3


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
    """Decoding steps with a preallocated key/value cache.

    Args:
        backbone (BEiT3): The encoder.
        head (callable): Hidden states ``(B, C)`` -> logits ``(B, V)``.
        bos_id (int): Start token.
        mask_id (int): The mask token (the backbone's
            ``text_mask_token_id``).
        max_text_tokens (int, optional): Text tokens to reserve cache room
            for (the longest sequence; the cache grows beyond it).
    """

    def __init__(self, backbone, head: HeadFn, bos_id: int, mask_id: int,
                 max_text_tokens: Optional[int] = None) -> None:
        self.backbone, self.head = backbone, head
        self.bos_id, self.mask_id = bos_id, mask_id
        self.max_text_tokens = max_text_tokens
        self.cache = None

    def _run(self, ids: torch.Tensor, images=None) -> torch.Tensor:
        hidden, cache = self.backbone.forward_cached(
            ids, images=images, cache=self.cache,
            max_text_tokens=self.max_text_tokens)
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
        """Row ``i`` continues row ``index[i]`` (beam search); rows must
        stay among the beams of their image (only the text tokens of the
        cache are copied)."""
        self.cache.reorder_text_(index)


class FullSteps:
    """Decoding steps that re-encode the whole sequence each time (no
    cache); the same interface and results as :class:`CachedSteps`."""

    def __init__(self, backbone, head: HeadFn, bos_id: int, mask_id: int,
                 max_text_tokens: Optional[int] = None) -> None:
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


def _to_lists(words: torch.Tensor, lengths: torch.Tensor) -> List[List[int]]:
    """Rows of ``words`` cut at ``lengths`` (one read from the device)."""
    rows, counts = words.tolist(), lengths.tolist()
    return [row[:count] for row, count in zip(rows, counts)]


@torch.no_grad()
def greedy_search(steps, images: torch.Tensor, max_words: int,
                  eos_id: int) -> List[List[int]]:
    """Plain greedy decoding: the most likely next word at every step,
    until the first ``</s>`` (not the official ``num_beams=1``, which keeps
    going; see :func:`beam_search`).

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
    device = logits.device
    words = torch.zeros(batch, max(max_words, 1), dtype=torch.long,
                        device=device)
    lengths = torch.full((batch, ), max_words, dtype=torch.long,
                         device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for position in range(max_words):
        tokens = logits.argmax(-1)
        ends = ~done & (tokens == eos_id)
        lengths = torch.where(ends, position, lengths)
        done |= ends
        words[:, position] = tokens
        if position + 1 == max_words or bool(done.all()):
            break
        logits = steps.step(tokens)
    return _to_lists(words, lengths)


@torch.no_grad()
def beam_search(steps,
                images: torch.Tensor,
                max_length: int,
                eos_id: int,
                num_beams: int = 3,
                length_penalty: float = 0.6,
                pad_id: int = 1) -> List[List[int]]:
    """The beam search of the official BEiT-3 captioning evaluation.

    As unilm ``beit3`` evaluates captioning (one kept hypothesis per image,
    ``early_stopping=False``), step by step with ``cur_len`` = 2 + the words
    so far:

    * each step scores ``beam score + log p(word)`` for every beam and word
      and takes the top ``3 * num_beams`` candidates, best first (beams other
      than the first start at ``-1e9``);
    * a candidate ending with ``</s>`` closes its beam: the hypothesis
      ``<s> + words + one slot`` (``cur_len`` tokens) scores
      ``sum_logprobs / cur_len ** length_penalty`` and replaces the kept one
      when strictly better; candidates with another word become the next
      beams, in order, until ``num_beams`` are taken (candidates after that
      are ignored);
    * at ``cur_len + 1 == max_length`` every candidate closes its beam
      without the word it chose (its log-probability counted), so captions
      have at most ``max_length - 3`` words;
    * an image is done when it has a hypothesis whose score is at least the
      best candidate's score divided by ``(max_length - 1) **
      length_penalty``.

    With ``num_beams=1`` the single beam never takes ``</s>``: a caption
    ending there is kept as a hypothesis while the beam goes on with the
    next-best word. No token is banned here (mask logits beforehand for
    that). Hypothesis scores are computed in float64, as the official
    Python floats.

    Args:
        steps (CachedSteps | FullSteps): The stepper.
        images (Tensor): ``(B, 3, H, W)``.
        max_length (int): The official ``num_max_bpe_tokens``: the longest
            sequence, ``<s>`` and ``</s>`` included (64 in the official
            evaluation). At least 3.
        eos_id (int): End token.
        num_beams (int): Beams per image.
        length_penalty (float): Exponent of the length normalisation.
        pad_id (int): Token fed to the beams of finished images (their
            outputs are not used).

    Returns:
        list[list[int]]: The words (without ``<s>`` / ``</s>``) of the best
        hypothesis of each image.
    """
    if num_beams < 1:
        raise ValueError(f'num_beams must be >= 1, got {num_beams}.')
    if max_length < 3:
        raise ValueError(f'max_length must be >= 3 (<s>, a word slot and '
                         f'</s>), got {max_length}.')
    batch, beams = images.shape[0], num_beams
    topn = TOPN_PER_BEAM * beams
    logits = steps.start(images.repeat_interleave(beams, 0))
    vocab = logits.shape[-1]
    if vocab < TOPN_PER_BEAM:
        raise ValueError(f'A vocabulary of {vocab} tokens is too small for '
                         'beam search (at least 3).')
    device = logits.device
    rows = torch.arange(batch * beams, device=device).view(batch, beams)
    image_rows = torch.arange(batch, device=device)
    order = torch.arange(topn, device=device)
    beam_scores = torch.zeros(batch, beams, device=device)
    beam_scores[:, 1:] = DEAD_BEAM
    words = torch.zeros(batch * beams, max_length, dtype=torch.long,
                        device=device)
    best_score = torch.full((batch, ), float('-inf'), dtype=torch.float64,
                            device=device)
    best_words = torch.zeros(batch, max_length, dtype=torch.long,
                             device=device)
    best_len = torch.zeros(batch, dtype=torch.long, device=device)
    has_hyp = torch.zeros(batch, dtype=torch.bool, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    done_norm = float(max_length - 1)**length_penalty
    for cur_len in range(2, max_length):
        logprobs = F.log_softmax(logits.float(), dim=-1)
        candidates = (logprobs + beam_scores.view(-1, 1)).view(batch, -1)
        scores, index = candidates.topk(topn, dim=1)
        beam, word = index // vocab, index % vocab
        done |= has_hyp & (best_score >= scores[:, 0].double() / done_norm)

        last = cur_len + 1 == max_length
        is_eos = word == eos_id
        other = (~is_eos).long()
        if last:  # every candidate closes its beam
            closes = torch.ones_like(is_eos)
        else:  # </s> candidates before the beams are full
            closes = is_eos & (other.cumsum(1) - other < beams)
        first = torch.where(closes, order, topn).min(1).values
        found = first < topn
        first = first.clamp(max=topn - 1)[:, None]
        score = scores.gather(1, first)[:, 0].double() / \
            float(cur_len)**length_penalty
        better = found & ~done & (~has_hyp | (score > best_score))
        source = rows[image_rows, beam.gather(1, first)[:, 0]]
        best_words = torch.where(better[:, None], words[source], best_words)
        best_len = torch.where(better, cur_len - 2, best_len)
        best_score = torch.where(better, score, best_score)
        has_hyp |= better
        if last:
            break

        # The next beams: the first `beams` candidates that are not </s>.
        taken = (~is_eos) & (other.cumsum(1) <= beams)
        chosen = torch.where(taken, order, order + topn).topk(
            beams, dim=1, largest=False).values
        next_scores = scores.gather(1, chosen)
        sources = (image_rows[:, None] * beams + beam.gather(1, chosen))
        next_words = word.gather(1, chosen)
        # Finished images keep their rows (the official pads them).
        sources = torch.where(done[:, None], rows, sources).view(-1)
        next_words = torch.where(done[:, None], pad_id, next_words).view(-1)
        beam_scores = torch.where(done[:, None], 0., next_scores)
        words = words.index_select(0, sources)
        words[:, cur_len - 2] = next_words
        if bool(done.all()):  # the one read from the device per step
            break
        steps.reorder(sources)
        logits = steps.step(next_words)
    return _to_lists(best_words, best_len)


__all__ = ['prefix_causal_mask', 'CachedSteps', 'FullSteps',
           'greedy_search', 'beam_search', 'TOPN_PER_BEAM']
