"""Forward passes and losses of the vision-language task models (VQA,
NLVR2, retrieval, the captioner's training loss) against hand computations
from the backbone's hidden states: LayerNorm, GELU, tanh, sigmoid, softmax
and the losses written out here, the official BEiT-3 heads' wiring
(unilm ``beit3/modeling_finetune.py``)."""
import math

import pytest
import torch
from mmpretrain.structures import DataSample

from mmvlp.models import BEiT3Captioner
from mmvlp.models.multimodal import BEiT3NLVR2, BEiT3Retrieval, BEiT3VQA

ARCH = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)
VOCAB, MASK = 30, 29
BACKBONE = dict(type='BEiT3', arch=ARCH, img_size=16, patch_size=8,
                vocab_size=VOCAB, max_text_len=8, text_mask_token_id=MASK)
PREPROCESSOR = dict(type='mmpretrain.MultiModalDataPreprocessor')
IMAGE_TOKENS = 1 + 2 * 2  # CLS + a 2x2 patch grid


def layer_norm(x, module):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean)**2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + module.eps) * module.weight + \
        module.bias


def linear(x, module):
    out = x @ module.weight.t()
    return out if module.bias is None else out + module.bias


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def log_softmax(logits):
    return logits - torch.log(torch.exp(logits).sum(-1, keepdim=True))


def _randomize(module, seed=1):
    """Every parameter random (LayerNorm gains and biases included), so no
    wiring mistake hides behind an identity init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return module


def _texts(batch, length=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, MASK, (batch, length), generator=generator)
    ids[:, 0] = 0
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[0, -2:] = True  # the first text is shorter
    ids[padding] = 1
    return ids, padding


def test_vqa_forward_loss_and_prediction_by_hand():
    torch.manual_seed(0)
    model = BEiT3VQA(backbone=BACKBONE, answers=['a', 'b', 'c', 'd'],
                     data_preprocessor=PREPROCESSOR).eval()
    _randomize(model.pooler)
    _randomize(model.head, seed=2)
    images = torch.randn(2, 3, 16, 16)
    ids, padding = _texts(2)
    samples = [DataSample(text_ids=ids[i], text_padding_mask=padding[i])
               for i in range(2)]
    samples[0].set_field([0, 2], 'answer_labels')
    samples[0].set_field([1.0, 0.3], 'answer_scores')
    samples[1].set_field([3], 'answer_labels')
    samples[1].set_field([0.6], 'answer_scores')
    with torch.no_grad():
        hidden = model.backbone.forward_sequence(
            images=images, text_ids=ids, text_padding_mask=padding)
        pooled = torch.tanh(linear(layer_norm(hidden[:, 0],
                                              model.pooler.norm),
                                   model.pooler.dense))
        head = model.head
        logits = linear(gelu(layer_norm(linear(pooled, head[0]), head[1])),
                        head[3])
        targets = torch.tensor([[1.0, 0, 0.3, 0], [0, 0, 0, 0.6]])
        prob = 1 / (1 + torch.exp(-logits))
        bce = -(targets * torch.log(prob) +
                (1 - targets) * torch.log(1 - prob)).mean() * 4
        best = logits.argmax(-1)
        score = targets[torch.arange(2), best].mean() * 100
        losses = model.loss(images, samples)
        torch.testing.assert_close(model.extract_feat(images, samples),
                                   logits)
    torch.testing.assert_close(losses['loss_vqa'], bce)
    torch.testing.assert_close(losses['vqa_score'], score)
    predicted = model.predict(images, samples)
    for row, sample in enumerate(predicted):
        torch.testing.assert_close(sample.pred_score, prob[row])
        assert sample.pred_answer == 'abcd'[int(best[row])]


def test_nlvr2_forward_and_loss_by_hand():
    torch.manual_seed(0)
    model = BEiT3NLVR2(backbone=BACKBONE,
                       data_preprocessor=PREPROCESSOR).eval()
    _randomize(model.head)
    images = torch.randn(3, 2, 3, 16, 16)
    ids, padding = _texts(3)
    labels = [1, 0, 1]
    samples = [DataSample(text_ids=ids[i], text_padding_mask=padding[i])
               .set_gt_label(labels[i]) for i in range(3)]
    with torch.no_grad():
        pairs = []
        for k in range(2):  # each image with the statement, separately
            hidden = model.backbone.forward_sequence(
                images=images[:, k], text_ids=ids, text_padding_mask=padding)
            pairs.append(torch.cat([hidden[:, 0], hidden[:, IMAGE_TOKENS]],
                                   -1))
        x = torch.cat(pairs, -1)  # [image 1 CLS, text 1 CLS, image 2, text 2]
        head = model.head
        logits = linear(gelu(layer_norm(linear(layer_norm(
            x, head.norm1), head.dense1), head.norm2)), head.dense2)
        target = torch.tensor(labels)
        ce = -log_softmax(logits)[torch.arange(3), target].mean()
        losses = model.loss(images, samples)
    torch.testing.assert_close(model.extract_feat(images, samples), logits)
    torch.testing.assert_close(losses['loss_cls'], ce)
    accuracy = (logits.argmax(-1) == target).float().mean() * 100
    torch.testing.assert_close(losses['accuracy'], accuracy)
    predicted = model.predict(images, samples)
    probs = torch.exp(log_softmax(logits))
    for row, sample in enumerate(predicted):
        torch.testing.assert_close(sample.pred_score, probs[row])
        assert int(sample.pred_label) == int(logits[row].argmax())


def test_retrieval_encoders_and_contrastive_loss_by_hand():
    torch.manual_seed(0)
    model = BEiT3Retrieval(backbone=BACKBONE, embed_dims=8,
                           data_preprocessor=PREPROCESSOR).eval()
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        model.logit_scale.fill_(1.5)
    images = torch.randn(3, 3, 16, 16)
    ids, padding = _texts(3)
    samples = [DataSample(text_ids=ids[i], text_padding_mask=padding[i])
               for i in range(3)]

    def unit(x):
        return x / torch.sqrt((x * x).sum(-1, keepdim=True))

    with torch.no_grad():
        image_cls = model.backbone.forward_sequence(images=images)[:, 0]
        text_cls = model.backbone.forward_sequence(
            text_ids=ids, text_padding_mask=padding)[:, 0]
        image_feat = unit(image_cls @ model.vision_head.weight.t())
        text_feat = unit(text_cls @ model.language_head.weight.t())
        logits = math.exp(1.5) * image_feat @ text_feat.t()
        rows = torch.arange(3)
        expected = (-log_softmax(logits)[rows, rows].mean() -
                    log_softmax(logits.t())[rows, rows].mean()) / 2
        torch.testing.assert_close(model.encode_image(images), image_feat)
        torch.testing.assert_close(model.encode_text(ids, padding),
                                   text_feat)
        losses = model.loss(images, samples)
    torch.testing.assert_close(losses['loss_contrastive'], expected)
    torch.testing.assert_close(losses['logit_scale'],
                               torch.tensor(math.exp(1.5)))
    scores = model.predict(images, samples)
    for row, sample in enumerate(scores):
        torch.testing.assert_close(sample.pred_score,
                                   image_feat[row] @ text_feat.t())


def test_captioner_loss_by_hand():
    """The captioner's training loss: the caption after the image under a
    prefix-causal mask (built here by hand), the masked tokens' logits,
    cross-entropy against label-smoothed targets (1 - 0.1 on the word,
    0.1 / (V - 1) elsewhere, as the official ``BertCaptioningLoss`` up to
    its constant), and after ``drop_worst_after`` steps the mean of the
    smallest 80% of the token losses."""
    torch.manual_seed(0)
    model = BEiT3Captioner(backbone=BACKBONE, max_length=8,
                           drop_worst_after=1,
                           data_preprocessor=PREPROCESSOR).train()
    _randomize(model.mlm_head)
    images = torch.randn(2, 3, 16, 16)
    ids, padding = _texts(2, length=8)
    ids[1, -1] = 2  # </s> of the longer caption
    chosen = torch.zeros_like(padding)
    chosen[0, [1, 2, 4]] = True
    chosen[1, [1, 3, 4, 5, 6, 7]] = True
    masked = ids.masked_fill(chosen, MASK)
    samples = [DataSample(text_ids=ids[i], masked_text_ids=masked[i],
                          text_padding_mask=padding[i],
                          text_mlm_mask=chosen[i]) for i in range(2)]
    total = IMAGE_TOKENS + 8
    allowed = torch.zeros(total, total, dtype=torch.bool)
    for query in range(total):
        for key in range(total):
            allowed[query, key] = key < IMAGE_TOKENS or (
                query >= IMAGE_TOKENS and key <= query)
    with torch.no_grad():
        hidden = model.backbone.forward_sequence(
            images=images, text_ids=masked, text_padding_mask=padding,
            attn_mask=~allowed)[:, IMAGE_TOKENS:]
        logits = linear(hidden[chosen], model.mlm_head.fc)
        targets = ids[chosen]
        smooth = torch.full_like(logits, 0.1 / (VOCAB - 1))
        smooth[torch.arange(len(targets)), targets] = 0.9
        token_losses = -(smooth * log_softmax(logits)).sum(-1)
        first = model.loss(images, samples)  # step 1: nothing dropped
        second = model.loss(images, samples)  # step 2: worst 20% dropped
    assert len(token_losses) == 9
    torch.testing.assert_close(first['loss_caption'], token_losses.mean())
    kept = token_losses.sort().values[:int(9 * 0.8)]
    torch.testing.assert_close(second['loss_caption'], kept.mean())
    accuracy = (logits.argmax(-1) == targets).float().mean() * 100
    torch.testing.assert_close(first['caption_acc'], accuracy)
