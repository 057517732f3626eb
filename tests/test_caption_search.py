"""BEiT3Captioner decodes as the official captioning evaluation.

``official_search`` below is a reference of the search in unilm
``beit3/engine_for_finetuning.py`` (``CaptioningHandler.eval_batch``) with
``utils.BeamHypotheses`` (one kept hypothesis, ``early_stopping=False``),
written from its description: a per-candidate loop over Python floats, as
the official code runs it. mmvlp's :func:`beam_search` (vectorised on the
device) must give the same captions token for token on a synthetic language
model, in hundreds of cases (1-4 beams, short and long limits, captions
that end early and ones that reach the maximum length), and on the
official captioning model itself.
"""
import itertools
import math
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmvlp.models import BEiT3Captioner
from mmvlp.models.multimodal import CachedSteps, beam_search, greedy_search
from mmvlp.testing import official_state, official_task_model

BOS, PAD, EOS = 0, 1, 2


class BestHypothesis:
    """The official ``BeamHypotheses`` with ``n_hyp=1``: a hypothesis'
    score is its summed log-probability over ``len(tokens) **
    length_penalty``, where ``tokens`` is ``<s>``, the words and the slot
    of ``</s>``; a new one replaces the kept one when strictly better; the
    image is done once the kept score is at least the best candidate's
    summed log-probability over ``(max_length - 1) ** length_penalty``."""

    def __init__(self, max_length, length_penalty):
        self.kept = None  # (score, tokens)
        self.limit = max_length - 1
        self.penalty = length_penalty

    def add(self, tokens, sum_logprobs):
        score = sum_logprobs / len(tokens)**self.penalty
        if self.kept is None or score > self.kept[0]:
            self.kept = (score, tokens)

    def is_done(self, best_sum_logprobs):
        return self.kept is not None and \
            self.kept[0] >= best_sum_logprobs / self.limit**self.penalty


def official_search(next_logits, batch, beams, max_length,
                    length_penalty=0.6, eos=EOS, pad=PAD, reorder=None):
    """The official beam search, step by step.

    Args:
        next_logits (callable): ``(rows' word lists) -> (rows, V)`` float
            logits of the next word (rows are ``batch * beams``, the beams
            of an image together).
        reorder (callable, optional): Called with the source rows of the
            next step (a model cache follows the beams).

    Returns:
        list[list[int]]: The words of each image's caption.
    """
    rows = batch * beams
    words = [[] for _ in range(rows)]
    scores = torch.zeros(batch, beams)
    scores[:, 1:] = -1e9
    scores = scores.view(-1)
    kept = [BestHypothesis(max_length, length_penalty)
            for _ in range(batch)]
    done = [False] * batch
    length = 2  # <s>, the words so far and the slot being predicted
    while length <= max_length:
        logprobs = F.log_softmax(next_logits(words).float(), dim=-1)
        vocab = logprobs.shape[-1]
        total = (logprobs + scores[:, None]).view(batch, beams * vocab)
        top_scores, top_ids = total.topk(3 * beams, dim=1)
        chosen = []  # (score, word, source row) per row of the next step
        for image in range(batch):
            done[image] = done[image] or kept[image].is_done(
                top_scores[image].max().item())
            if done[image]:
                chosen += [(0., pad, 0)] * beams
                continue
            taken = []
            for flat, score in zip(top_ids[image].tolist(),
                                   top_scores[image]):
                source = image * beams + flat // vocab
                word = flat % vocab
                closing = (word == eos and length + 1 <= max_length) or \
                    length + 1 == max_length
                if closing:
                    tokens = [BOS] + words[source] + ['slot']
                    kept[image].add(tokens, score.item())
                else:
                    taken.append((score.item(), word, source))
                if len(taken) == beams:
                    break
            chosen += taken or [(0., pad, 0)] * beams
        scores = torch.tensor([c[0] for c in chosen], dtype=torch.float32)
        sources = [c[2] for c in chosen]
        if reorder is not None:
            reorder(sources)
        words = [words[s] + [c[1]] for s, c in zip(sources, chosen)]
        length += 1
        if all(done):
            break
    return [k.kept[1][1:-1] for k in kept]


def hashed_lm(seed, vocab, eos_bias, beams, scale=2.):
    """Logits that depend on the image and the whole prefix (a hash of
    both), with a bias on </s>."""

    def logits(image, prefix):
        key = hash((seed, image) + tuple(prefix)) & 0xffffffff
        row = np.random.default_rng(key).standard_normal(vocab) * scale
        row[EOS] += eos_bias
        return torch.as_tensor(row, dtype=torch.float32)

    def rows(words):
        return torch.stack([logits(r // beams, w)
                            for r, w in enumerate(words)])

    return logits, rows


class LMSteps:
    """A stepper for mmvlp's searches over a function of (image, prefix)."""

    def __init__(self, logits):
        self.logits = logits
        self.calls = 0

    def _run(self):
        self.calls += 1
        return torch.stack([self.logits(i, p)
                            for i, p in zip(self.images, self.prefix)])

    def start(self, images):
        self.images = [int(v) for v in images[:, 0, 0, 0]]
        self.prefix = [[] for _ in range(images.shape[0])]
        return self._run()

    def step(self, tokens):
        self.prefix = [p + [t] for p, t in zip(self.prefix, tokens.tolist())]
        return self._run()

    def reorder(self, index):
        self.prefix = [list(self.prefix[i]) for i in index.tolist()]
        self.images = [self.images[i] for i in index.tolist()]


def image_ids(batch):
    return torch.arange(batch, dtype=torch.float32).view(-1, 1, 1, 1).expand(
        batch, 3, 2, 2)


CASES = list(itertools.product(range(8), (1, 2, 3, 4), (3, 4, 7, 12),
                               (-4., 0., 2.)))


@pytest.mark.parametrize('chunk', range(4))
def test_beam_search_equals_the_official_search(chunk):
    """384 cases: seeds x beams x max_length x </s> bias (-4 makes most
    captions run to the maximum length, +2 ends many at once)."""
    reached_limit = ended_early = 0
    for seed, beams, max_length, bias in CASES[chunk::4]:
        vocab, batch = 9 + seed % 3, 3
        logits, rows = hashed_lm(seed, vocab, bias, beams)
        expected = official_search(rows, batch, beams, max_length)
        got = beam_search(LMSteps(logits), image_ids(batch), max_length,
                          EOS, num_beams=beams, length_penalty=0.6,
                          pad_id=PAD)
        assert got == expected, (seed, beams, max_length, bias)
        reached_limit += sum(len(c) == max_length - 3 for c in got)
        ended_early += sum(len(c) < max_length - 3 for c in got)
    assert reached_limit > 20 and ended_early > 20


def table_lm(table, vocab=8):
    """Log-probabilities from a table keyed by the prefix (anything not in
    it: -30)."""

    def logits(image, prefix):
        row = torch.full((vocab, ), -30.)
        for word, prob in table.get(tuple(prefix), {EOS: 1.}).items():
            row[word] = math.log(prob)
        return row

    return logits


def test_length_penalty_counts_bos_words_and_the_eos_slot():
    """[3] + </s> (log-prob -1.0) against [3, 4] + </s> (-1.2): the
    official normalisation divides by 3 ** 0.6 and 4 ** 0.6 (``<s>``, the
    words and the ``</s>`` slot), so [3] wins (-0.517 vs -0.522); dividing
    by the words + 1 would pick [3, 4] (-0.660 vs -0.621)."""
    table = {(): {3: 1.}, (3, ): {EOS: math.exp(-1.), 4: math.exp(-1.2),
                                  5: 1 - math.exp(-1.) - math.exp(-1.2)},
             (3, 4): {EOS: 1.}, (3, 5): {6: 0.2, 7: 0.2, EOS: 0.6}}
    assert -1. / 3**0.6 > -1.2 / 4**0.6 and -1. / 2**0.6 < -1.2 / 3**0.6
    logits = table_lm(table)
    got = beam_search(LMSteps(logits), image_ids(1), 5, EOS, num_beams=2)
    expected = official_search(
        lambda words: torch.stack([logits(0, w) for w in words]), 1, 2, 5)
    assert got == expected == [[3]]


def test_one_beam_goes_on_past_eos_and_plain_greedy_stops():
    """With num_beams=1 the official search keeps a caption that ends with
    </s> and goes on with the next-best word; a longer caption that scores
    better replaces it. Plain greedy (mmvlp's option) stops at </s>."""
    logits = table_lm({(): {EOS: 0.52, 3: 0.48}, (3, ): {EOS: 1.}})
    official = beam_search(LMSteps(logits), image_ids(1), 8, EOS,
                           num_beams=1)
    # log 0.48 / 3**0.6 = -0.380 beats log 0.52 / 2**0.6 = -0.431
    assert official == [[3]]
    assert greedy_search(LMSteps(logits), image_ids(1), 6, EOS) == [[]]


def test_max_length_closes_without_the_last_word():
    """A caption that never ends: max_length - 3 words, the word chosen at
    the last step left out (its log-probability still counted)."""
    def logits(image, prefix):
        row = torch.full((8, ), -10.)
        row[3 + len(prefix) % 4] = 0.
        return row

    for max_length in (3, 4, 9):
        got = beam_search(LMSteps(logits), image_ids(2), max_length, EOS,
                          num_beams=3)
        words = [3 + i % 4 for i in range(max_length - 3)]
        assert got == [words, words]


def test_one_host_read_per_step():
    """The search state stays on the device: per step one read (whether
    every image is done), and one at the end."""
    logits, _ = hashed_lm(3, 9, -4., 3)
    steps = LMSteps(logits)
    reads = []
    original = torch.Tensor.__bool__

    def counting(self):
        reads.append(1)
        return original(self)

    with mock.patch.object(torch.Tensor, '__bool__', counting), \
            mock.patch.object(torch.Tensor, 'item',
                              side_effect=AssertionError('item()')):
        beam_search(steps, image_ids(2), 12, EOS, num_beams=3)
    assert steps.calls > 5
    assert len(reads) <= steps.calls


ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=48)
VOCAB, MASK = 40, 39


def _captioner(eos_bias=0., **kwargs):
    torch.manual_seed(0)
    model = BEiT3Captioner(
        backbone=dict(type='BEiT3', arch=ARCH, img_size=16, patch_size=8,
                      vocab_size=VOCAB, max_text_len=16,
                      text_mask_token_id=MASK),
        max_length=10,
        data_preprocessor=dict(type='mmpretrain.MultiModalDataPreprocessor'),
        **kwargs)
    with torch.no_grad():
        model.mlm_head.fc.bias[EOS] += eos_bias
    return model.eval()


@pytest.mark.parametrize('eos_bias', [0., 2.5])
def test_cached_decoding_equals_recomputing(eos_bias):
    """The preallocated cache gives the captions of re-encoding the whole
    sequence every step, for 1 and 3 beams and plain greedy."""
    model = _captioner(eos_bias)
    images = torch.randn(4, 3, 16, 16)
    lengths = set()
    for beams in (1, 3):
        cached = model.generate(images, num_beams=beams)
        assert model.generate(images, num_beams=beams,
                              use_cache=False) == cached
        lengths |= {len(c) for c in cached}
    model.plain_greedy = True
    assert model.generate(images, num_beams=1) == model.generate(
        images, num_beams=1, use_cache=False)
    assert (min(lengths) < 7) if eos_bias else (max(lengths) == 7)


def test_cache_is_written_in_place():
    """Decoding writes into the cache allocated at the first step (no
    copy of the cache per step) and beam reordering leaves the image
    tokens alone."""
    model = _captioner()
    steps = CachedSteps(model.backbone, model.next_token_logits, BOS, MASK,
                        max_text_tokens=10)
    images = torch.randn(2, 3, 16, 16).repeat_interleave(3, 0)
    steps.start(images)
    buffers = [k.data_ptr() for k, _ in steps.cache.layers]
    image_keys = steps.cache.layers[0][0][:, :, :5].clone()
    index = torch.tensor([2, 0, 0, 5, 5, 4])
    for _ in range(6):
        steps.reorder(index)
        steps.step(torch.randint(3, 30, (6, )))
    assert [k.data_ptr() for k, _ in steps.cache.layers] == buffers
    assert torch.equal(steps.cache.layers[0][0][:, :, :5], image_keys)
    assert steps.cache.length == 5 + 7  # image, <s> and six words


def test_special_tokens_are_allowed_unless_banned():
    """The official search may pick any row of the head (it bans
    nothing); ban_special_tokens (mmvlp's option) never generates <s>,
    <pad> or the mask token."""
    model = _captioner()
    with torch.no_grad():
        model.mlm_head.fc.bias[PAD] += 8.
    images = torch.randn(2, 3, 16, 16)
    assert any(PAD in c for c in model.generate(images))
    model.ban_special_tokens = True
    for caption in model.generate(images):
        assert not {BOS, PAD, MASK} & set(caption)


def test_generate_equals_the_official_evaluation_on_the_official_model(
        tmp_path):
    """The official captioning model (torchscale BEiT3 + mlm_head) decoded
    by the official search with its incremental state, and the same file
    loaded into BEiT3Captioner: the same captions, 1 and 3 beams."""
    arch = dict(embed_dims=48, num_layers=2, num_heads=3,
                feedforward_channels=80)
    reference = official_task_model('captioning', arch, img_size=32,
                                    vocab_size=50, seed=4)
    with torch.no_grad():
        reference.mlm_head.bias[EOS] += 1.  # some captions end early
    path = str(tmp_path / 'captioning.pth')
    torch.save(official_state(reference), path)
    model = BEiT3Captioner(
        backbone=dict(type='BEiT3', arch=arch, img_size=32, vocab_size=50,
                      text_mask_token_id=49),
        max_length=9, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()
    images = torch.randn(3, 3, 32, 32)
    for beams in (1, 3):
        state = {}
        expanded = images.repeat_interleave(beams, 0)
        rows = expanded.shape[0]

        def next_logits(words):
            length = len(words[0]) + 2
            if length == 2:
                ids = torch.tensor([[BOS, 49]]).expand(rows, 2)
                return reference.forward_captioning(
                    expanded, ids, torch.zeros(rows, 2).long(), text_len=2,
                    incremental_state=state)[:, -1]
            ids = torch.tensor([[w[-1], 49] for w in words])
            return reference.forward_captioning(
                None, ids, None, text_len=length,
                incremental_state=state)[:, -1]

        def follow(sources):
            index = torch.tensor(sources)
            for layer in state.values():
                for key in ('prev_key', 'prev_value'):
                    layer[key] = layer[key].index_select(0, index)[:, :, :-1]

        with torch.no_grad():
            expected = official_search(next_logits, 3, beams, 9,
                                       reorder=follow)
        assert model.generate(images, num_beams=beams) == expected
