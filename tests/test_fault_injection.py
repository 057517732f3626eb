"""Pretraining on data with injected faults trains to the end: truncated,
non-image, zero-byte and missing image files, empty / white-space /
over-long / non-UTF-8 captions, a truncated .tar shard and broken shard
records. Every skip is counted by reason, logged at every logging interval
and in the final summary; a skip rate above DataSkipHook's default (1%)
stops the run naming the worst source."""
import glob
import json
import re
from types import SimpleNamespace

import pytest
import webdataset as wds
from helpers.demo_data import make_demo_with_spm
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from test_bad_data import _break
from test_pretrain_runner import _cfg
from test_webdataset_shards import _make_shards, _truncate

from mmvlp.datasets import ImageTextDataset, load_image_text_list
from mmvlp.registry import DATASETS, HOOKS

MAX_ITERS = 5  # 5 x 4 = 20 samples: every source sees all its records
LONG = ' '.join(['a large red circle on the left'] * 300)
FILE_FAULTS = ('empty_file', 'truncated_image', 'not_an_image',
               'missing_file')


@pytest.fixture(scope='module')
def faulty(tmp_path_factory):
    """16 demo images and captions; images 0-3 broken (the four file
    faults), five extra caption records (empty, white space, two not UTF-8,
    one over-long); clean shards of the original pairs plus a truncated
    copy of one and a shard of broken records."""
    root = tmp_path_factory.mktemp('faults')
    data = make_demo_with_spm(root / 'data', num_train=16, num_val=2)
    shards = _make_shards('--ann-file', f'{data}/captions_train.jsonl',
                          '--out', str(root / 'shards'), '--maxcount', '4')
    urls = sorted(shards['shards'])
    _truncate(urls[0], root / 'shards' / 'truncated.tar')
    png = open(f'{data}/images/train/00010.png', 'rb').read()
    with wds.TarWriter(str(root / 'shards' / 'broken.tar')) as sink:
        sink.write({'__key__': 'zero', 'png': b'', 'txt': 'a red circle'})
        sink.write({'__key__': 'text', 'png': b'not an image', 'txt': 'x'})
        sink.write({'__key__': 'cut', 'png': png[:len(png) // 2],
                    'txt': 'a red circle'})
        sink.write({'__key__': 'latin1', 'png': png,
                    'txt': 'a red \xe9circle'.encode('latin-1')})
        sink.write({'__key__': 'blank', 'png': png, 'txt': ' \t '})
        sink.write({'__key__': 'nocaption', 'png': png})
    images = sorted(glob.glob(f'{data}/images/train/*.png'))
    for path, fault in zip(images, FILE_FAULTS):
        _break(path, fault)
    ann = f'{data}/captions_train.jsonl'
    good = json.loads(open(ann).readline())
    extra = [dict(good, caption=''), dict(good, caption=' \t '),
             dict(good, caption=LONG)]
    with open(ann, 'ab') as f:
        for record in extra:
            f.write(json.dumps(record).encode() + b'\n')
        f.write(json.dumps(dict(good, caption='red @@')).encode().replace(
            b'@@', b'\xff\xfe') + b'\n')  # bytes that are not UTF-8
        f.write(json.dumps(dict(good, caption='blue \udc80 square')).encode()
                + b'\n')  # an escaped lone surrogate: not encodable
    return data, urls + [str(root / 'shards' / 'truncated.tar'),
                         str(root / 'shards' / 'broken.tar')]


def _runner(data, work_dir, shard_urls=None, **hook):
    cfg = _cfg(data, work_dir, max_iters=MAX_ITERS)
    cfg.model.backbone.arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                                   feedforward_channels=64)
    cfg.log_level = 'INFO'
    cfg.default_hooks.checkpoint = None
    cfg.custom_hooks = [dict(type='DataSkipHook', **hook)]
    cfg.experiment_name = f'faults_{work_dir.parent.name}_{work_dir.name}'
    if shard_urls:
        pair = cfg.train_dataloader.pair
        pair.sampler = None
        pair.dataset = dict(type='WebShardDataset', urls=shard_urls,
                            repeat=True, shuffle_buffer=4,
                            pipeline=pair.dataset.pipeline)
    return Runner.from_cfg(cfg)


def _check_log(work_dir):
    log = open(glob.glob(f'{work_dir}/*/*.log')[0]).read()
    lines = re.findall(r'Iter\(train\) \[\d+/\d+\].*', log)
    assert len(lines) == MAX_ITERS  # logger interval 1
    for line in lines:  # counts at every logging interval
        for source in ('image', 'text', 'pair'):
            assert re.search(rf'skipped/{source}: \d+', line), line
    summary = re.search(r'Data skipped in training: (.*)', log)
    assert summary, 'no final summary'
    return summary.group(1)


def _totals(runner):
    hook = next(h for h in runner.hooks if type(h).__name__ ==
                'DataSkipHook')
    return hook.totals()


def test_caption_lists_skip_and_count_bad_text(faulty):
    data, _ = faulty
    samples, skips = load_image_text_list(f'{data}/captions_train.jsonl',
                                          img_prefix=data)
    assert skips == dict(empty_caption=2, bad_encoding=2)
    assert len(samples) == 17  # 16 + the over-long one
    tsv = f'{data}/pairs.tsv'
    with open(tsv, 'wb') as f:
        f.write(b'images/train/00005.png\ta blue square\n'
                b'images/train/00006.png\tbad \xff bytes\n')
    samples, skips = load_image_text_list(tsv, img_prefix=data)
    assert [s['caption'] for s in samples] == ['a blue square']
    assert skips == dict(bad_encoding=1)


def test_over_long_caption_is_truncated(faulty):
    data, _ = faulty
    cfg = _cfg(data, '/unused')
    init_default_scope('mmvlp')
    dataset = ImageTextDataset(
        ann_file='captions_train.jsonl', data_root=data,
        pipeline=cfg.train_dataloader.pair.dataset.pipeline)
    index = next(i for i in range(len(dataset))
                 if dataset.get_data_info(i)['caption'] == LONG)
    sample = dataset[index]
    assert sample['inputs']['text_ids'].shape == (cfg.max_text_len, )
    assert not sample['inputs']['text_padding_mask'].any()  # full, cut


def test_files_and_lists_train_to_the_end(faulty, tmp_path):
    data, _ = faulty
    runner = _runner(data, tmp_path / 'files')
    runner.train()
    assert runner.iter == MAX_ITERS
    totals = _totals(runner)
    # The folder scan has no missing file; the pair list names it.
    assert set(totals['image']['reasons']) == set(FILE_FAULTS[:3])
    assert set(totals['pair']['reasons']) == set(FILE_FAULTS)
    assert totals['pair']['at_load'] == dict(empty_caption=2,
                                             bad_encoding=2)
    assert totals['text']['at_load'] == dict(empty_text=2, bad_encoding=2)
    for source, info in totals.items():
        assert sum(info['reasons'].values()) == info['skipped'], source
    summary = _check_log(tmp_path / 'files')
    assert 'pair: ' in summary and 'at load: empty_caption 2, ' \
        'bad_encoding 2' in summary and 'missing_file' in summary


def test_shard_stream_trains_to_the_end(faulty, tmp_path):
    data, urls = faulty
    runner = _runner(data, tmp_path / 'shards', shard_urls=urls)
    runner.train()
    assert runner.iter == MAX_ITERS
    reasons = _totals(runner)['pair']['reasons']
    assert set(reasons) == {
        'broken_shard',  # truncated.tar
        'missing_field',  # its half record, and nocaption
        'empty_file', 'not_an_image', 'truncated_image', 'bad_encoding',
        'empty_caption'}, reasons
    assert reasons['broken_shard'] == 1
    summary = _check_log(tmp_path / 'shards')
    assert 'broken_shard 1' in summary


def test_default_max_skip_rate_stops_naming_the_worst_source(faulty):
    """DataSkipHook stops at 1% by default, naming the worst source (here
    at load: pair 4 of 21 records, text 4 of many segments)."""
    data, _ = faulty
    init_default_scope('mmvlp')
    hook = HOOKS.build(dict(type='DataSkipHook', min_samples=8))
    assert hook.max_skip_rate == 0.01
    cfg = _cfg(data, '/unused')
    loaders = {name: SimpleNamespace(dataset=DATASETS.build(loader.dataset))
               for name, loader in cfg.train_dataloader.items()}
    runner = SimpleNamespace(
        train_loop=SimpleNamespace(dataloader=SimpleNamespace(
            loaders=loaders)),
        hooks=[hook], message_hub=MessageHub.get_instance('faults_stop'),
        logger=MMLogger.get_current_instance(), iter=0)
    with pytest.raises(RuntimeError, match=r"Data source 'pair' skipped "
                       r'19\.05% of its annotation list as bad data '
                       r'\(empty_caption 2, bad_encoding 2\), more than '
                       r'max_skip_rate=1\.00%'):
        hook.before_train(runner)
