"""The vision-language task models freeze exactly the backbone parameters
that get no gradient (DistributedDataParallel stops at the second iteration
on any such parameter), for both BEiT-3 layouts, with and without the final
norm (mmvlp/models/backbones/beit3_reach.py). The two-process runs of the
demo configs are in tools/analysis_tools/dist_matrix.py (make test-dist)."""
import pytest
import torch
from mmpretrain.structures import DataSample

from mmvlp.models.backbones.beit3_reach import (unused_parameters,
                                                used_modules)
from mmvlp.models.multimodal import (BEiT3Captioner, BEiT3NLVR2,
                                     BEiT3Retrieval, BEiT3VQA)

LENGTH, VOCAB = 6, 20


def _backbone(layout: str, final_norm: bool) -> dict:
    return dict(type='BEiT3',
                arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                          feedforward_channels=64),
                img_size=16, patch_size=8, vocab_size=VOCAB,
                max_text_len=8, text_mask_token_id=VOCAB - 1, layout=layout,
                num_vl_layers=1 if layout == 'shared' else 0,
                final_norm=final_norm)


def _text(sample: DataSample, generator: torch.Generator) -> None:
    ids = torch.randint(3, VOCAB - 1, (LENGTH, ), generator=generator)
    ids[0] = 0
    padding = torch.zeros(LENGTH, dtype=torch.bool)
    padding[-1] = True
    sample.set_field(ids, 'text_ids')
    sample.set_field(padding, 'text_padding_mask')


def _batch(task: str, batch: int = 3):
    generator = torch.Generator().manual_seed(0)
    shape = (batch, 2, 3, 16, 16) if task == 'nlvr2' else (batch, 3, 16, 16)
    images = torch.randn(shape, generator=generator)
    samples = []
    for index in range(batch):
        sample = DataSample()
        _text(sample, generator)
        if task == 'vqa':
            sample.set_field(torch.tensor([index % 2]), 'answer_labels')
            sample.set_field(torch.tensor([1.]), 'answer_scores')
        elif task == 'nlvr2':
            sample.set_gt_label(index % 2)
        elif task == 'caption':
            predict = torch.zeros(LENGTH, dtype=torch.bool)
            predict[1:3] = True
            sample.set_field(predict, 'text_mlm_mask')
            sample.set_field(sample.text_ids.masked_fill(predict, VOCAB - 1),
                             'masked_text_ids')
        samples.append(sample)
    return images, samples


def _model(task: str, backbone: dict):
    if task == 'vqa':
        return BEiT3VQA(backbone, answers=['no', 'yes'])
    if task == 'nlvr2':
        return BEiT3NLVR2(backbone)
    if task == 'retrieval':
        return BEiT3Retrieval(backbone)
    return BEiT3Captioner(backbone, max_length=LENGTH)


@pytest.mark.parametrize('final_norm', [True, False])
@pytest.mark.parametrize('layout', ['decoupled', 'shared'])
@pytest.mark.parametrize('task', ['vqa', 'nlvr2', 'retrieval', 'caption'])
def test_frozen_parameters_are_those_without_gradient(task, layout,
                                                      final_norm):
    torch.manual_seed(0)
    model = _model(task, _backbone(layout, final_norm))
    frozen = set(model.frozen_unused)
    assert 'mask_token' in frozen
    trainable = {name for name, p in model.backbone.named_parameters()
                 if p.requires_grad}
    assert trainable.isdisjoint(frozen)
    # Unfreeze everything and see what a real backward pass reaches.
    model.requires_grad_(True)
    model.train()
    images, samples = _batch(task)
    loss, _ = model.parse_losses(model(images, samples, mode='loss'))
    loss.backward()
    without_grad = {name for name, p in model.named_parameters()
                    if p.grad is None}
    assert without_grad == {f'backbone.{name}' for name in frozen}


def test_which_parts_are_frozen():
    """Spelled out: in the decoupled layout only the mask token is never
    run; in the shared layout a dual encoder (retrieval) never runs the
    vision-language FFN expert, and pair tasks never run the per-modality
    FFN experts of the vision-language layers."""
    torch.manual_seed(0)
    vqa = BEiT3VQA(_backbone('decoupled', True), answers=['no', 'yes'])
    assert vqa.frozen_unused == ['mask_token']
    shared = BEiT3Retrieval(_backbone('shared', True))
    ffn = [f'{part}.{name}' for part in ('norm2', 'ffn') for name, _ in
           getattr(shared.backbone.layers[1], part).vl.named_parameters()]
    assert sorted(shared.frozen_unused) == sorted(
        ['mask_token'] + [f'layers.1.{name.replace(".", ".vl.", 1)}'
                          for name in ffn])
    pair = BEiT3VQA(_backbone('shared', True), answers=['no', 'yes'])
    assert sorted(pair.frozen_unused) == sorted(
        ['mask_token'] + [f'layers.1.{name.replace(".", f".{kind}.", 1)}'
                          for name in ffn for kind in ('vision', 'text')])
    # With vision_mask (pretraining) the mask token runs.
    assert shared.backbone.mask_token in used_modules(
        shared.backbone, ['image'], vision_mask=True)


def test_bad_sequence_kinds_are_refused():
    model = BEiT3Retrieval(_backbone('decoupled', True))
    with pytest.raises(ValueError, match='Unknown sequence kind'):
        unused_parameters(model.backbone, ['video'])
