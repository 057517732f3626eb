"""Webdataset shards: written by tools/data/make_shards.py, read back,
split across ranks and workers, shuffled per epoch, bad records counted."""
import importlib.util
import json
import os.path as osp
import tarfile
import zlib

import mmcv
import numpy as np
import pytest
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from mmvlp.datasets import SKIP_REASONS, WebShardDataset, make_demo_dataset
from mmvlp.engine import MultiSourceLoader

TOOL = osp.join(osp.dirname(__file__), '..', 'tools', 'data',
                'make_shards.py')


def _make_shards(*argv):
    spec = importlib.util.spec_from_file_location('make_shards', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(argv))


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp('shards')
    make_demo_dataset(str(root / 'data'), num_train=12, num_val=2, size=32)
    pairs = _make_shards('--ann-file', str(root / 'data/captions_train.jsonl'),
                         '--out', str(root / 'out'), '--maxcount', '3')
    images = _make_shards('--image-dir', str(root / 'data/images/train'),
                          '--out', str(root / 'out'), '--maxcount', '4')
    return root, pairs, images


def _keys(dataset, **loader):
    return [key for batch in DataLoader(dataset, batch_size=None, **loader)
            for key in [batch['img_path']]]


def _counts(batches):
    total = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
    for batch in batches:
        total += batch['skipped'].sum(0)
    return {r: int(c) for r, c in zip(SKIP_REASONS, total) if c}


def test_shards_read_back_completely(shards):
    root, pairs, images = shards
    assert pairs['written'] == 12 and len(pairs['shards']) == 4
    assert pairs['skipped'] == {}
    dataset = WebShardDataset(pairs['urls'], shuffle_buffer=0,
                              shard_shuffle=False, num_samples=12)
    samples = list(dataset)
    assert len(samples) == len(dataset) == 12
    lines = [json.loads(line) for line in
             (root / 'data/captions_train.jsonl').read_text().splitlines()]
    for sample, line in zip(samples, lines):
        assert sample['caption'] == line['caption']
        assert sample['content_words'] == line['content_words']
        expected = mmcv.imread(str(root / 'data' / line['image']))
        assert np.array_equal(sample['img'], expected)  # BGR HWC uint8
        assert sample['img_shape'] == sample['ori_shape'] == (32, 32)
    only = WebShardDataset(images['urls'], with_caption=False,
                           shuffle_buffer=0)
    assert images['written'] == 12 and len(images['shards']) == 3
    assert sum(1 for s in only if 'caption' not in s) == 12


def test_ranks_and_workers_read_each_record_once(shards):
    _, pairs, _ = shards
    for epoch in (0, 1):
        keys = []
        for rank in (0, 1):
            dataset = WebShardDataset(pairs['urls'], shuffle_buffer=4,
                                      rank=rank, world_size=2)
            dataset.set_epoch(epoch)
            keys += _keys(dataset, num_workers=2)
        assert sorted(keys) == [f'{i:09d}' for i in range(12)], epoch
    dataset = WebShardDataset(pairs['urls'], rank=1, world_size=2)
    readers = [dataset.shards_for(0, w, 2) for w in (0, 1)]
    assert all(len(r) == 1 for r in readers) and readers[0] != readers[1]
    with pytest.raises(ValueError, match=r'4 shard\(s\) cannot feed 2 '
                       r'rank\(s\) x 3 dataloader worker\(s\) = 6'):
        dataset.shards_for(0, 0, 3)


def test_order_depends_on_seed_and_epoch_only(shards):
    _, pairs, _ = shards

    def order(seed, epoch):
        dataset = WebShardDataset(pairs['urls'], shuffle_buffer=6, seed=seed)
        dataset.set_epoch(epoch)
        return [s['img_path'] for s in dataset]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert sorted(order(0, 1)) == sorted(order(0, 0))
    # A second pass without set_epoch moves on to the next epoch, and
    # repeat=True streams the epochs back to back.
    dataset = WebShardDataset(pairs['urls'], shuffle_buffer=6)
    first = [s['img_path'] for s in dataset]
    second = [s['img_path'] for s in dataset]
    assert (first, second) == (order(0, 0), order(0, 1))
    stream = iter(WebShardDataset(pairs['urls'], shuffle_buffer=6,
                                  repeat=True))
    assert [next(stream)['img_path'] for _ in range(24)] == first + second


def _truncate(src, dst):
    """Cut a shard in the middle of its second image."""
    with tarfile.open(src) as tar:
        member = [m for m in tar.getmembers() if m.name.endswith('.png')][1]
    data = open(src, 'rb').read()
    open(dst, 'wb').write(data[:member.offset_data + member.size // 2])


def test_bad_records_are_skipped_and_counted(shards, tmp_path):
    root, pairs, _ = shards
    good = sorted(pairs['shards'])
    _truncate(good[3], tmp_path / 'truncated.tar')
    png = open(root / 'data/images/train/00000.png', 'rb').read()
    with wds.TarWriter(str(tmp_path / 'bad.tar')) as sink:
        sink.write({'__key__': 'bad0', 'png': png, 'txt': 'fine'})
        sink.write({'__key__': 'bad1', 'png': b'not an image', 'txt': 'x'})
        sink.write({'__key__': 'bad2', 'png': png, 'txt': '  '})
        sink.write({'__key__': 'bad3', 'png': png})  # no caption
        sink.write({'__key__': 'bad4', 'jpg': png[:50], 'txt': 'cut'})
        sink.write({'__key__': 'bad5', 'png': png, 'txt': 'fine too'})
    urls = good[:3] + [str(tmp_path / 'truncated.tar'),
                       str(tmp_path / 'bad.tar'), str(tmp_path / 'gone.tar')]
    dataset = WebShardDataset(
        urls, shuffle_buffer=4,
        pipeline=[dict(type='LoadImageSafe'), dict(type='PackFields')])
    batches = list(DataLoader(dataset, batch_size=4, num_workers=2))
    delivered = sum(len(b['skipped']) for b in batches)
    assert delivered == 9 + 1 + 2  # 3 good shards, 1 before the cut, 2 good
    assert _counts(batches) == dict(
        broken_shard=2,  # truncated.tar, gone.tar
        missing_field=2,  # bad3; the json-only half record before the cut
        not_an_image=1, empty_caption=1, truncated_image=1)
    # Training goes on: an endless stream keeps every batch full.
    dataset.repeat = True
    loader = MultiSourceLoader(dict(pair=DataLoader(
        dataset, batch_size=4, num_workers=2)))
    stream = iter(loader)
    steps = [next(stream)['pair'] for _ in range(8)]
    assert all(b['inputs']['img'].shape == (4, 3, 32, 32) for b in steps)
    assert _counts(steps)['not_an_image'] >= 1


def test_multi_source_loader_moves_a_stream_to_the_next_epoch(shards):
    _, pairs, _ = shards
    dataset = WebShardDataset(pairs['urls'], shuffle_buffer=6,
                              pipeline=[dict(type='PackFields',
                                             keys=('img', ))])
    loader = MultiSourceLoader(dict(pair=DataLoader(dataset, batch_size=6)))
    assert len(loader) == 0  # no num_samples: unknown, not an error
    loader.set_epoch(3)
    assert dataset.epoch == 3
    stream = iter(loader)
    for _ in range(3):  # two batches per epoch: the third starts epoch 4
        next(stream)
    assert loader.epochs['pair'] == 4 and dataset.epoch == 5
    dataset.num_samples = 12
    assert len(loader) == 2


def test_refuses_file_loading_in_the_pipeline(shards):
    _, pairs, _ = shards
    with pytest.raises(ValueError, match='LoadImageSafe'):
        WebShardDataset(pairs['urls'],
                        pipeline=[dict(type='mmcv.LoadImageFromFile')])
    with pytest.raises(TypeError, match='num_samples='):
        len(WebShardDataset(pairs['urls']))


def test_truncated_tar_without_error_is_a_missing_field(shards, tmp_path):
    """A shard cut at a header boundary ends silently inside tarfile; the
    half record it leaves is still counted."""
    _, pairs, _ = shards
    src = sorted(pairs['shards'])[0]
    with tarfile.open(src) as tar:
        member = [m for m in tar.getmembers() if m.name.endswith('.txt')][1]
    data = open(src, 'rb').read()
    (tmp_path / 'cut.tar').write_bytes(data[:member.offset])
    dataset = WebShardDataset(str(tmp_path / 'cut.tar'), shuffle_buffer=0)
    samples = list(dataset)
    assert len(samples) == 1
    assert _counts([dict(skipped=samples[0]['skipped'][None])]) == dict(
        missing_field=1)


@pytest.mark.parametrize('num_workers', [0, 2])
def test_endless_stream_resumes_without_decoding(shards, monkeypatch,
                                                 num_workers):
    _, pairs, _ = shards

    def loader():
        dataset = WebShardDataset(
            pairs['urls'], shuffle_buffer=4, repeat=True,
            pipeline=[dict(type='PackFields', keys=('img', 'sample_key'))])
        dataset.pipeline.transforms.insert(0, _key_field)
        return MultiSourceLoader(dict(pair=DataLoader(
            dataset, batch_size=2, num_workers=num_workers)))

    def take(multi, count):
        stream = iter(multi)
        return [next(stream)['pair']['inputs'] for _ in range(count)]

    whole = take(loader(), 11)  # 22 records: across an epoch boundary
    decoded = []
    if num_workers == 0:
        prepare = WebShardDataset._prepare

        def counting(self, record, decode=True):
            decoded.append(decode)
            return prepare(self, record, decode)

        monkeypatch.setattr(WebShardDataset, '_prepare', counting)
    resumed = loader()
    resumed.seek(7)
    rest = take(resumed, 4)
    for got, want in zip(rest, whole[7:]):
        assert torch.equal(got['sample_key'], want['sample_key'])
        assert torch.equal(got['img'], want['img'])
    if num_workers == 0:
        # 14 records skipped undecoded; 8 delivered + 1 held back decoded.
        assert decoded.count(False) == 14
        assert decoded.count(True) == 9
    with pytest.raises(ValueError, match='repeat=True'):
        WebShardDataset(pairs['urls']).seek(1, 2)


def _key_field(results):
    """The record key as a number (PackFields packs tensors)."""
    results['sample_key'] = zlib.crc32(results['img_path'].encode())
    return results
