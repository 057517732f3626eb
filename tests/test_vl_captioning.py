"""Cached prefix-causal decoding, greedy and beam search (BEiT3Captioner);
the search against the official one: tests/test_caption_search.py."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mmvlp.models import BEiT3, BEiT3Captioner
from mmvlp.models.multimodal import (beam_search, greedy_search,
                                     prefix_causal_mask,
                                     smoothed_cross_entropy)

ARCH = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)
VOCAB, MASK, EOS = 40, 39, 2


def _backbone(layout='decoupled'):
    torch.manual_seed(0)
    return BEiT3(arch=ARCH, img_size=32, patch_size=8, vocab_size=VOCAB,
                 max_text_len=16, text_mask_token_id=MASK, layout=layout,
                 num_vl_layers=2 if layout == 'shared' else None).eval()


def _captioner(eos_bias=0.):
    torch.manual_seed(0)
    model = BEiT3Captioner(
        backbone=dict(type='BEiT3', arch=ARCH, img_size=32, patch_size=8,
                      vocab_size=VOCAB, max_text_len=16,
                      text_mask_token_id=MASK),
        max_length=12,
        data_preprocessor=dict(type='mmpretrain.MultiModalDataPreprocessor'))
    with torch.no_grad():  # make </s> likely enough to end some captions
        model.mlm_head.fc.bias[EOS] += eos_bias
    return model.eval()


@pytest.mark.parametrize('layout', ['decoupled', 'shared'])
def test_cached_forward_equals_full_sequence(layout):
    """Step-by-step encoding with the key/value cache gives the hidden
    states of one pass over the whole prefix-causal sequence (for the
    shared layout also through the vision-language experts)."""
    model = _backbone(layout)
    images = torch.randn(2, 3, 32, 32)
    ids = torch.randint(3, MASK, (2, 7))
    mask = prefix_causal_mask(17, 7)
    full = model.forward_sequence(images=images, text_ids=ids,
                                  attn_mask=mask)
    # Room for 3 text tokens: the preallocated cache grows on the way.
    hidden, cache = model.forward_cached(ids[:, :3], images=images,
                                         max_text_tokens=3)
    assert cache.capacity == 17 + 3
    parts = [hidden]
    for t in range(3, 7):
        hidden, cache = model.forward_cached(ids[:, t:t + 1], cache=cache)
        parts.append(hidden)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    assert (cache.length, cache.num_text_tokens) == (24, 7)
    assert cache.capacity >= 24
    # Dropping a token and re-encoding another in its place, and picking
    # batch rows, agree with full passes too.
    other = ids.clone()
    other[:, 6] = 5
    hidden, _ = model.forward_cached(other[:, 6:], cache=cache.trim(23))
    full = model.forward_sequence(images=images, text_ids=other,
                                  attn_mask=mask)
    assert torch.allclose(hidden[:, 0], full[:, -1], atol=1e-5)
    rows = torch.tensor([1, 1, 0])
    hidden, _ = model.forward_cached(other[rows, 6:],
                                     cache=cache.trim(23).index_select(rows))
    assert torch.allclose(hidden[:, 0], full[rows, -1], atol=1e-5)


def test_cached_forward_bad_use():
    model = _backbone()
    images = torch.randn(1, 3, 32, 32)
    _, cache = model.forward_cached(torch.tensor([[0, MASK]]), images=images)
    with pytest.raises(ValueError, match='first call only'):
        model.forward_cached(torch.tensor([[4]]), images=images, cache=cache)
    with pytest.raises(ValueError, match='Cannot trim'):
        cache.trim(3)
    with pytest.raises(ValueError, match='longer than max_text_len'):
        model.forward_cached(torch.ones(1, 15, dtype=torch.long),
                             cache=cache)


def test_prefix_causal_mask():
    mask = prefix_causal_mask(2, 3)
    allowed = ~mask
    assert allowed[:2, :2].all() and not allowed[:2, 2:].any()
    assert allowed[2:, :2].all()
    assert torch.equal(allowed[2:, 2:], torch.ones(3, 3).tril().bool())


class _TableSteps:
    """A stepper whose log-probabilities depend on the last token only
    (a Markov chain), to compare beam search with exhaustive search."""

    def __init__(self, table: torch.Tensor, first: torch.Tensor) -> None:
        self.table, self.first = table, first

    def start(self, images):
        self.last = None
        return self.first.expand(images.shape[0], -1).clone()

    def step(self, tokens):
        return self.table[tokens]

    def reorder(self, index):
        pass


def _exhaustive(table, first, max_length, penalty):
    """The best caption under the official scoring: ``n`` words and
    ``</s>`` score ``sum / (n + 2) ** penalty``; at ``max_length - 3``
    words the caption is closed with the best next token's log-prob."""
    logp_first = F.log_softmax(first, -1)
    logp = F.log_softmax(table, -1)
    best, best_words = -math.inf, None
    vocab = table.shape[0]
    longest = max_length - 3
    for n in range(longest + 1):
        for words in itertools.product(
                [v for v in range(vocab) if v != EOS], repeat=n):
            score, prev = 0., None
            for token in words:
                row = logp_first if prev is None else logp[prev]
                score += float(row[token])
                prev = token
            row = logp_first if prev is None else logp[prev]
            score += float(row.max() if n == longest else row[EOS])
            score /= (n + 2)**penalty
            if score > best:
                best, best_words = score, list(words)
    return best_words


def test_beam_search_finds_what_greedy_misses():
    """A chain where the likelier first word (A, 0.6) leads nowhere
    certain and the other (B, 0.4) is almost surely followed by </s>:
    plain greedy search takes A, beam search returns [B], which enumerating
    all captions shows to be the best for every length penalty."""
    dead = -20.
    a, b, c = 3, 4, 5
    first = torch.full((6, ), dead)
    first[a], first[b] = math.log(0.6), math.log(0.4)
    table = torch.full((6, 6), dead)
    for token in (a, c, 0, 1, EOS):
        table[token, [a, b, c]] = math.log(1 / 3)
    table[b, EOS] = math.log(0.99)
    images = torch.zeros(1, 3, 4, 4)
    greedy = greedy_search(_TableSteps(table, first), images, 3, EOS)
    assert greedy[0] == [a, a, a]
    for penalty in (0., 0.6, 1.):
        assert _exhaustive(table, first, 6, penalty) == [b]
        found = beam_search(_TableSteps(table, first), images, 6, EOS,
                            num_beams=2, length_penalty=penalty)
        assert found[0] == [b], penalty


def test_captioner_loss_and_mlm_head_from_pretraining(tmp_path):
    """The loss runs under the prefix-causal mask on masked positions
    (label smoothing, worst tokens dropped after drop_worst_after steps),
    and the pretraining checkpoint's MLM head is loaded with the
    backbone."""
    from mmpretrain.structures import DataSample
    model = _captioner()
    state = {f'backbone.{k}': v for k, v in
             model.backbone.state_dict().items()}
    head = torch.randn(VOCAB, 32)
    state['mlm_head.fc.weight'] = head
    state['mlm_head.fc.bias'] = torch.zeros(VOCAB)
    path = str(tmp_path / 'pretrain.pth')
    torch.save(dict(state_dict=state), path)
    torch.manual_seed(0)
    loaded = BEiT3Captioner(
        backbone=dict(type='BEiT3', arch=ARCH, img_size=32, patch_size=8,
                      vocab_size=VOCAB, max_text_len=16,
                      text_mask_token_id=MASK,
                      init_cfg=dict(type='Pretrained', checkpoint=path,
                                    prefix='backbone.')),
        max_length=12, drop_worst_after=1, drop_worst_ratio=0.5)
    loaded.init_weights()
    assert torch.equal(loaded.mlm_head.fc.weight, head)
    samples = []
    for _ in range(2):
        ids = torch.tensor([0, 5, 6, 7, EOS, 1, 1, 1])
        chosen = torch.tensor([0, 1, 0, 1, 1, 0, 0, 0]).bool()
        samples.append(DataSample(
            text_ids=ids, masked_text_ids=ids.masked_fill(chosen, MASK),
            text_padding_mask=ids == 1, text_mlm_mask=chosen))
    loaded.train()
    images = torch.randn(2, 3, 32, 32)
    first = loaded.loss(images, samples)
    assert first['loss_caption'].requires_grad
    first['loss_caption'].backward()
    assert loaded.backbone.patch_embed.proj.weight.grad is not None
    second = loaded.loss(images, samples)  # now 50% of the tokens dropped
    assert int(loaded.train_steps) == 2
    assert second['loss_caption'] < first['loss_caption']


def test_smoothed_cross_entropy():
    logits = torch.randn(5, 7)
    targets = torch.randint(0, 7, (5, ))
    plain = F.cross_entropy(logits, targets, reduction='none')
    assert torch.allclose(smoothed_cross_entropy(logits, targets, 0.),
                          plain)
    eps = 0.1
    soft = torch.full((5, 7), eps / 6).scatter(1, targets[:, None], 1 - eps)
    expected = -(soft * F.log_softmax(logits, -1)).sum(-1)
    assert torch.allclose(smoothed_cross_entropy(logits, targets, eps),
                          expected, atol=1e-6)
