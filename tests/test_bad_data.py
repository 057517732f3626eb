"""Bad data: unreadable images and empty texts are skipped, replaced and
counted by reason, across dataloader workers, and DataSkipHook logs them."""
import glob
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers.ports import free_port
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner
from test_vl_contrastive import _run_workers
from torch.utils.data import DataLoader

from mmvlp.datasets import (SKIP_REASONS, ImageTextDataset, TextCorpusDataset,
                            make_demo_dataset, skip_counter)
from mmvlp.datasets.transforms import LoadImageSafe
from mmvlp.registry import DATASETS, HOOKS
from mmvlp.text import train_sentencepiece

FAULTS = ('empty_file', 'truncated_image', 'not_an_image', 'missing_file')


@pytest.fixture(autouse=True)
def no_pending_skips():
    """Skips left pending in this process by another test would ride on
    this test's first sample."""
    skip_counter().pop()


def _break(path: str, fault: str) -> None:
    """Turn an image file into one that fails with ``fault``."""
    if fault == 'empty_file':
        open(path, 'wb').close()
    elif fault == 'truncated_image':
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:len(data) // 2])
    elif fault == 'not_an_image':
        open(path, 'w').write('this is text, not a PNG')
    else:
        os.remove(path)


def _faulty_demo(root, num_bad=4):
    """12 demo pairs, the first ``num_bad`` images broken (the faults in
    turn) and one more record with an empty caption."""
    make_demo_dataset(str(root), num_train=12, num_val=0, size=32)
    images = sorted(glob.glob(str(root / 'images/train/*.png')))
    for i in range(num_bad):
        _break(images[i], FAULTS[i % len(FAULTS)])
    ann = root / 'captions_train.jsonl'
    lines = ann.read_text().splitlines()
    extra = dict(json.loads(lines[-1]), caption='  ')
    ann.write_text('\n'.join(lines + [json.dumps(extra)]) + '\n')
    return str(root)


def _counts(batches):
    total = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
    for batch in batches:
        total += batch['skipped'].sum(0)
    return {r: int(c) for r, c in zip(SKIP_REASONS, total) if c}


def test_load_image_safe_reasons(tmp_path):
    root = _faulty_demo(tmp_path)
    load = LoadImageSafe()
    for i, fault in enumerate(FAULTS):
        before = skip_counter().totals.copy()
        assert load(dict(img_path=f'{root}/images/train/{i:05d}.png')) is None
        diff = skip_counter().totals - before
        assert diff[SKIP_REASONS.index(fault)] == 1 and diff.sum() == 1
    ok = load(dict(img_path=f'{root}/images/train/00005.png'))
    assert ok['img'].shape == (32, 32, 3) and ok['img_shape'] == (32, 32)
    # A decoded image (from shards) passes through.
    img = np.zeros((4, 5, 3), np.uint8)
    assert load(dict(img=img))['img_shape'] == (4, 5)


@pytest.mark.parametrize('num_workers', [0, 2])
def test_image_text_batches_stay_full(tmp_path, num_workers):
    root = _faulty_demo(tmp_path)
    dataset = ImageTextDataset(
        ann_file='captions_train.jsonl', data_root=root,
        pipeline=[dict(type='mmvlp.LoadImageSafe'),
                  dict(type='mmvlp.PackFields', keys=('img', ))])
    assert len(dataset) == 12 and dataset.load_skips == dict(empty_caption=1)
    dataset._rand_another = lambda: 11  # a good one: exact counts
    batches = list(DataLoader(dataset, batch_size=4,
                              num_workers=num_workers))
    assert [len(b['inputs']['img']) for b in batches] == [4, 4, 4]
    assert _counts(batches) == {fault: 1 for fault in FAULTS}


def test_image_folder_and_text_corpus(tmp_path):
    root = _faulty_demo(tmp_path, num_bad=3)  # the folder has no missing
    dataset = DATASETS.build(dict(
        type='mmpretrain.CustomDataset', data_root=root,
        data_prefix='images/train', with_label=False,
        pipeline=[dict(type='mmvlp.LoadImageSafe'),
                  dict(type='mmvlp.PackFields', keys=('img', ))]))
    batches = list(DataLoader(dataset, batch_size=4, num_workers=2))
    assert [len(b['inputs']['img']) for b in batches] == [4, 4, 4]
    counts = _counts(batches)
    assert set(counts) == set(FAULTS[:3]) and min(counts.values()) >= 1
    model = train_sentencepiece(f'{root}/captions_train.jsonl',
                                str(tmp_path / 'spm'), vocab_size=60,
                                field='caption')
    corpus = TextCorpusDataset(f'{root}/captions_train.jsonl',
                               tokenizer=dict(model_file=model),
                               field='caption', pipeline=[])
    assert len(corpus) >= 12 and corpus.load_skips == dict(empty_text=1)


class _Toy(BaseModel):
    """Takes any batch; the loss only needs a parameter."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, mode='loss', **data):
        return dict(loss=(self.w**2).sum())


def _runner(root, work_dir, num_workers, **hook):
    pipeline = [dict(type='LoadImageSafe'),
                dict(type='PackFields', keys=('img', ))]
    loader = dict(batch_size=4, num_workers=num_workers,
                  sampler=dict(type='DefaultSampler', shuffle=True),
                  collate_fn=dict(type='default_collate'))
    return Runner(
        model=_Toy(), work_dir=str(work_dir), default_scope='mmvlp',
        # Its own name: runners started in the same second would otherwise
        # share mmengine's logger and message hub (named by the timestamp).
        experiment_name=f'bad_data_{work_dir.parent.name}',
        train_dataloader=dict(
            image=dict(dataset=dict(
                type='mmpretrain.CustomDataset', data_root=root,
                data_prefix='images/train', with_label=False,
                pipeline=pipeline), **loader),
            pair=dict(dataset=dict(
                type='ImageTextDataset', data_root=root,
                ann_file='captions_train.jsonl', pipeline=pipeline),
                **loader)),
        train_cfg=dict(type='MultiSourceTrainLoop', max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=None),
        custom_hooks=[dict(type='DataSkipHook', **hook)],
        randomness=dict(seed=0))


@pytest.mark.parametrize('num_workers', [0, 2])
def test_hook_logs_counts_with_runner(tmp_path, num_workers):
    # Half of the images are bad: every batch of 4 from 11-12 files meets
    # at least one.
    root = _faulty_demo(tmp_path / 'data', num_bad=6)
    runner = _runner(root, tmp_path / 'work', num_workers)
    main_before = skip_counter().totals.sum()
    runner.train()
    # Stop the workers now: left to the cyclic garbage collector, torch
    # waits 5 s for each of them (their queues are gone by then).
    iterator = runner.train_loop.dataloader_iterator
    getattr(iterator, '_iterator', iterator).close()
    hook = next(h for h in runner.hooks if type(h).__name__ ==
                'DataSkipHook')
    totals = hook.totals()
    for source in ('image', 'pair'):
        info = totals[source]
        assert info['skipped'] >= 1, source
        assert info['seen'] == 2 * 4 + info['skipped']
        assert sum(info['reasons'].values()) == info['skipped']
        assert runner.message_hub.get_scalar(
            f'train/skipped/{source}').current() == info['skipped'] + sum(
                info['at_load'].values())
    assert totals['pair']['at_load'] == dict(empty_caption=1)
    assert 'missing_file' not in totals['image']['reasons']
    if num_workers:  # the counts came from the workers, with the samples
        assert skip_counter().totals.sum() == main_before
    log = open(glob.glob(f'{tmp_path}/work/*/*.log')[0]).read()
    pair = runner.message_hub.get_scalar('train/skipped/pair').current()
    assert f'skipped/pair: {pair}' in log
    assert 'Data skipped in training: image: ' in log
    assert 'at load: empty_caption 1' in log


@pytest.mark.parametrize('rate,what', [
    (0.05, 'of its annotation list'),  # 1 empty caption in 13 records
    (0.1, 'of the [0-9]+ samples it has seen'),  # about half the images
])
def test_hook_stops_above_max_skip_rate(tmp_path, rate, what):
    root = _faulty_demo(tmp_path / 'data', num_bad=6)
    runner = _runner(root, tmp_path / 'work', 0, max_skip_rate=rate,
                     min_samples=4)
    with pytest.raises(RuntimeError, match=r"Data source '(image|pair)' "
                       rf'skipped [0-9.]+% {what} as bad data .* more than '
                       rf'max_skip_rate={100 * rate:.2f}%'):
        runner.train()
    assert runner.iter == 0  # stopped before or in the first iteration


def test_hook_arguments():
    with pytest.raises(ValueError, match='max_skip_rate'):
        HOOKS.build(dict(type='mmvlp.DataSkipHook', max_skip_rate=1.5))
    with pytest.raises(ValueError, match='interval'):
        HOOKS.build(dict(type='mmvlp.DataSkipHook', interval=0))


def test_hook_counts_a_plain_loop_batch():
    """An ordinary loop's batch (default or pseudo collate) is one source,
    ``train``."""
    hook = HOOKS.build(dict(type='mmvlp.DataSkipHook', interval=2))
    loader = SimpleNamespace(dataset=SimpleNamespace(load_skips={}))
    runner = SimpleNamespace(
        train_loop=SimpleNamespace(dataloader=loader), hooks=[hook],
        message_hub=MessageHub.get_instance('test_plain_loop'),
        logger=MMLogger.get_current_instance(), iter=0, max_iters=4)
    hook.before_train(runner)
    one = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
    one[SKIP_REASONS.index('not_an_image')] = 1
    hook.after_train_iter(runner, 0, dict(inputs=None,
                                          skipped=torch.stack([one, one])))
    runner.iter = 1
    hook.after_train_iter(runner, 1, dict(inputs=[], skipped=[one * 0, one]))
    assert hook.totals() == dict(train=dict(
        seen=7, skipped=3, reasons=dict(not_an_image=3), at_load={}))
    assert runner.message_hub.get_scalar(
        'train/skipped/train').current() == 3


def _skips(**counts):
    """One sample's skip counts, e.g. ``_skips(not_an_image=1)``."""
    row = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
    for reason, count in counts.items():
        row[SKIP_REASONS.index(reason)] = count
    return row


#: Per rank, per iteration, per source: the skip counts of each sample.
RANK_BATCHES = [
    [dict(image=[_skips(not_an_image=1), _skips()], pair=[_skips()]),
     dict(image=[_skips(), _skips()], pair=[_skips(empty_caption=2)])],
    [dict(image=[_skips(missing_file=3), _skips()], pair=[_skips()]),
     dict(image=[_skips(not_an_image=1), _skips()], pair=[_skips()])],
]


def _skip_hook_worker(rank, world_size, port, out_dir, min_samples):
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        hook = HOOKS.build(dict(type='mmvlp.DataSkipHook', interval=2,
                                max_skip_rate=0.3, min_samples=min_samples))
        # (datasets of 100 records without annotation-list skips)
        loaders = {name: SimpleNamespace(dataset=list(range(100)))
                   for name in ('image', 'pair')}
        runner = SimpleNamespace(
            train_loop=SimpleNamespace(
                dataloader=SimpleNamespace(loaders=loaders)),
            hooks=[hook], iter=0, max_iters=2,
            message_hub=MessageHub.get_instance(f'skips_rank{rank}'),
            logger=MMLogger.get_current_instance())
        hook.before_train(runner)
        error = None
        try:
            for step, batch in enumerate(RANK_BATCHES[rank]):
                runner.iter = step
                hook.after_train_iter(runner, step, {
                    source: dict(inputs=None, skipped=torch.stack(rows))
                    for source, rows in batch.items()})
        except RuntimeError as exc:
            error = str(exc)
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(dict(totals=hook.totals(), error=error, scalars={
                s: int(runner.message_hub.get_scalar(
                    f'train/skipped/{s}').current())
                for s in ('image', 'pair')}), f)
    finally:
        dist.destroy_process_group()


def test_hook_sums_skips_across_two_ranks(tmp_path):
    """Two gloo ranks, each with its own non-zero skip counts: after the
    reduction both hold the sums (seen = delivered + skipped), and the skip
    rate is judged on the sums: 5 of 13 image samples skipped (38.5% >
    30%) stops both ranks once 13 samples may be judged, though neither
    rank alone has seen 13 (5 and 8)."""
    expected = dict(
        image=dict(seen=13, skipped=5, reasons=dict(
            missing_file=3, not_an_image=2), at_load={}),
        pair=dict(seen=6, skipped=2, reasons=dict(empty_caption=2),
                  at_load={}))
    for min_samples, stops in ((1000, False), (13, True)):
        out = tmp_path / str(min_samples)
        out.mkdir()
        _run_workers(_skip_hook_worker, 2,
                     (2, free_port(), str(out), min_samples))
        for rank in range(2):
            with open(out / f'rank{rank}.json') as f:
                result = json.load(f)
            assert result['totals'] == expected, rank
            assert result['scalars'] == dict(image=5, pair=2), rank
            if stops:
                assert "Data source 'image' skipped 38.46% of the 13 " \
                    'samples' in result['error'], rank
            else:
                assert result['error'] is None, rank
