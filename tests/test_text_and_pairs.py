"""SentencePiece text tokenizer (XLM-R ids as BEiT-3) and image-text data."""
import json

import pytest
import sentencepiece as spm
import torch

from mmvlp.datasets import ImageTextDataset, make_demo_dataset
from mmvlp.text import TextTokenizer, train_sentencepiece


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('pairs')
    make_demo_dataset(str(root), num_train=40, num_val=2, size=32)
    models = {
        style: train_sentencepiece(str(root / 'captions_train.jsonl'),
                                   str(root / f'spm_{style}'),
                                   vocab_size=60, field='caption',
                                   style=style)
        for style in ('xlmr', 'native')
    }
    return root, models


def test_xlmr_ids_follow_beit3(demo):
    _, models = demo
    tokenizer = TextTokenizer(models['xlmr'], style='xlmr', max_length=64)
    sp = spm.SentencePieceProcessor(model_file=models['xlmr'])
    assert (tokenizer.bos_id, tokenizer.pad_id, tokenizer.eos_id,
            tokenizer.unk_id) == (0, 1, 2, 3)
    assert tokenizer.mask_id == sp.get_piece_size() + 1
    text = 'a red circle at the top'
    ids = tokenizer.encode(text)
    assert ids[0] == 0 and ids[-1] == 2
    assert ids[1:-1] == [i + 1 for i in sp.encode(text)]  # fairseq offset
    assert tokenizer.decode(ids) == text


def test_batch_padding_and_truncation(demo):
    _, models = demo
    tokenizer = TextTokenizer(models['xlmr'], max_length=8)
    ids, padding = tokenizer(['a red circle at the top on a grey background',
                              'a'])
    assert ids.shape == (2, 8) and ids[0, -1] == tokenizer.eos_id
    assert torch.equal(padding, ids == tokenizer.pad_id)
    assert padding[1].any() and not padding[0].any()
    with pytest.raises(ValueError, match='max_length=8'):
        tokenizer(['a'], pad_to=9)


def test_native_style(demo):
    _, models = demo
    tokenizer = TextTokenizer(models['native'], style='native')
    assert tokenizer.pad_id == 3
    assert tokenizer.mask_id == spm.SentencePieceProcessor(
        model_file=models['native']).piece_to_id('<mask>')
    # A model trained without <pad>/<mask> cannot be read natively.
    with pytest.raises(ValueError, match='lacks bos/eos/pad'):
        TextTokenizer(models['xlmr'], style='native')


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='train_text_tokenizer'):
        TextTokenizer(str(tmp_path / 'beit3.spm'))


def test_image_text_formats_and_skips(demo, tmp_path):
    root, _ = demo
    lines = (root / 'captions_train.jsonl').read_text().splitlines()[:4]
    items = [json.loads(line) for line in lines]
    items[1]['caption'] = '   '  # skipped and counted
    jsonl = tmp_path / 'pairs.jsonl'
    jsonl.write_text('\n'.join(json.dumps(i) for i in items))
    tsv = tmp_path / 'pairs.tsv'
    tsv.write_text('\n'.join(f"{i['image']}\t{i['caption']}" for i in items))
    coco = tmp_path / 'pairs.json'
    coco.write_text(json.dumps(dict(
        images=[dict(id=k, file_name=i['image']) for k, i in enumerate(items)],
        annotations=[dict(image_id=k, caption=i['caption'])
                     for k, i in enumerate(items)])))
    for ann in (jsonl, tsv, coco):
        dataset = ImageTextDataset(ann_file=str(ann), data_root=str(root),
                                   pipeline=[])
        assert len(dataset) == 3 and dataset.num_skipped == 1
        first = dataset.get_data_info(0)
        assert first['img_path'] == str(root / items[0]['image'])
        assert first['caption'] == items[0]['caption']
    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"caption": "no image"}\n')
    with pytest.raises(ValueError, match='bad.jsonl:1'):
        ImageTextDataset(ann_file=str(bad), pipeline=[])


def test_pipeline_packs_text(demo):
    root, models = demo
    dataset = ImageTextDataset(
        ann_file=str(root / 'captions_train.jsonl'), data_root=str(root),
        pipeline=[
            dict(type='mmcv.LoadImageFromFile'),
            dict(type='mmvlp.TokenizeText', model_file=models['xlmr'],
                 max_length=20),
            dict(type='mmpretrain.PackInputs',
                 algorithm_keys=['text_ids', 'text_padding_mask'])
        ])
    sample = dataset[0]
    assert sample['inputs'].shape == (3, 32, 32)
    ids = sample['data_samples'].text_ids
    assert ids.shape == (20, ) and ids[0] == 0
    tokenizer = TextTokenizer(models['xlmr'], max_length=20)
    assert tokenizer.decode(ids) == dataset.get_data_info(0)['caption'][
        :len(tokenizer.decode(ids))]
