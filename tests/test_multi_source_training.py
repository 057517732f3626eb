"""Multi-source training under two CPU ranks (tools/dist_train.sh, gloo),
per-sample seeds and exact resumption."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from helpers.ports import free_port
import torch
import helpers.training_record  # noqa: F401  (registers the hook)
from helpers.demo_data import make_demo_with_spm
from mmengine.dataset import DefaultSampler
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from test_pretrain_runner import _cfg
from torch.utils.data import DataLoader, Dataset

from mmvlp.datasets.transforms.packing import PRETRAIN_KEYS
from mmvlp.engine import (MultiSourceLoader, SeededDataset, SeededSampler,
                          build_seeded_dataloader)
from mmvlp.registry import DATASETS

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
TESTS = osp.dirname(osp.abspath(__file__))
# Per-rank batch sizes, all different; 12 images -> 6 per rank and epoch.
BATCH = dict(image=2, text=3, pair=1)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_with_spm(tmp_path_factory.mktemp('multi_source'),
                              num_train=12, num_val=2)


def _record_cfg(demo_root, work_dir, max_iters, checkpoint_interval=None,
                num_workers=0, batch=BATCH):
    """The tiny demo config with drop path (as the recipes), sample indices
    in the batches and the TrainingRecordHook."""
    cfg = _cfg(demo_root, work_dir, max_iters=max_iters)
    for source, loader in cfg.train_dataloader.items():
        loader.update(batch_size=batch[source], num_workers=num_workers,
                      persistent_workers=num_workers > 0)
        for step in loader.dataset.pipeline:
            if step.type == 'PackFields':
                step['keys'] = list(PRETRAIN_KEYS) + ['sample_idx']
    cfg.model.backbone.drop_path_rate = 0.1
    cfg.custom_imports = dict(imports=['helpers.training_record'],
                              allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='TrainingRecordHook')]
    cfg.default_hooks.checkpoint.interval = checkpoint_interval or max_iters
    return cfg


def _records(work_dir, world_size):
    records = []
    for rank in range(world_size):
        with open(osp.join(str(work_dir), f'record_rank{rank}.json')) as f:
            records.append(json.load(f))
    return records


def _dist_train(config, work_dir, nproc):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               OMP_NUM_THREADS='1', PYTHONPATH=TESTS)
    result = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config,
         str(nproc), '--work-dir', str(work_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + \
        result.stderr[-6000:]
    return result


def _dataset_sizes(cfg):
    init_default_scope('mmvlp')
    return {source: len(DATASETS.build(loader.dataset))
            for source, loader in cfg.train_dataloader.items()}


def test_two_cpu_ranks_with_dist_train_sh(demo_root, tmp_path):
    max_iters = 6
    cfg = _record_cfg(demo_root, tmp_path / 'unused', max_iters)
    config = str(tmp_path / 'tiny_pretrain.py')
    cfg.dump(config)
    runs = []
    for run in ('first', 'again'):
        work_dir = tmp_path / run
        _dist_train(config, work_dir, nproc=2)
        runs.append(_records(work_dir, 2))
    first, again = runs
    # The final checkpoint is written (rank 1 has been seen to abort at exit
    # on this stack after finishing: the checkpoint is what counts).
    assert osp.isfile(osp.join(str(tmp_path / 'first'),
                               f'iter_{max_iters}.pth'))
    assert [r['world_size'] for r in first] == [2, 2]
    sizes = _dataset_sizes(cfg)
    for source, batch_size in BATCH.items():
        per_rank = math.ceil(sizes[source] / 2)  # DefaultSampler pads
        steps_per_epoch = math.ceil(per_rank / batch_size)
        for epoch in range(max_iters // steps_per_epoch):
            window = slice(epoch * steps_per_epoch,
                           (epoch + 1) * steps_per_epoch)
            seen = []
            for record in first:
                batches = [step['indices'][source]
                           for step in record['steps'][window]]
                # per-source batch sizes as configured (the last of an
                # epoch holds the rest)
                assert [len(b) for b in batches[:-1]] == \
                    [batch_size] * (steps_per_epoch - 1), source
                assert len(batches[-1]) == per_rank - \
                    batch_size * (steps_per_epoch - 1), source
                seen.append([i for b in batches for i in b])
            rank0, rank1 = map(set, seen)
            assert len(rank0) == len(seen[0]), source  # no repeats
            assert len(rank1) == len(seen[1]), source
            # disjoint up to DefaultSampler's padding, covering the dataset
            assert len(rank0 & rank1) == 2 * per_rank - sizes[source], source
            assert rank0 | rank1 == set(range(sizes[source])), source
    for record in first:
        for step in record['steps']:
            assert all(math.isfinite(v) for v in step['losses'].values())
    # The ranks trained on different data (different local losses) and DDP
    # kept their weights identical.
    assert first[0]['steps'][0]['losses'] != first[1]['steps'][0]['losses']
    assert first[0]['weights'] == first[1]['weights']
    # Deterministic for the seed: the same indices, losses and weights.
    for rank in range(2):
        assert again[rank]['steps'] == first[rank]['steps']
        assert again[rank]['weights'] == first[rank]['weights']


def _train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_resume_continues_exactly(demo_root, tmp_path, monkeypatch):
    # Uneven per-epoch lengths (image 6, text ~10, pair 3 batches) put the
    # resume point mid-epoch for some sources and at a boundary for others.
    batch = dict(image=2, text=3, pair=5)
    full = _train(_record_cfg(demo_root, tmp_path / 'full', 6,
                              checkpoint_interval=3, batch=batch))
    loaded = []
    original = SeededDataset.__getitem__

    def counting(self, key):
        loaded.append(key)
        return original(self, key)

    monkeypatch.setattr(SeededDataset, '__getitem__', counting)
    cfg = _record_cfg(demo_root, tmp_path / 'resumed', 6,
                      checkpoint_interval=3, batch=batch)
    cfg.resume = True  # as tools/train.py --resume CKPT
    cfg.load_from = str(tmp_path / 'full' / 'iter_3.pth')
    resumed = _train(cfg)
    (whole, ), (rest, ) = _records(tmp_path / 'full', 1), \
        _records(tmp_path / 'resumed', 1)
    # The resumed run loads only the samples it trains on (no replay).
    assert len(loaded) == sum(len(indices) for step in rest['steps']
                              for indices in step['indices'].values())
    assert [s['iter'] for s in rest['steps']] == [4, 5, 6]
    assert rest['steps'] == whole['steps'][3:]  # same data, same losses
    assert rest['weights'] == whole['weights']
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_data_does_not_depend_on_num_workers(demo_root, tmp_path):
    records = []
    for workers in (0, 2):
        work_dir = tmp_path / f'workers{workers}'
        _train(_record_cfg(demo_root, work_dir, 2, num_workers=workers))
        records.append(_records(work_dir, 1)[0])
    assert records[0]['steps'] == records[1]['steps']


class _Noisy(Dataset):
    """Index and one draw from numpy's global generator (an augmentation)."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return dict(index=index, draw=np.random.rand())


def _loader(batch_size, seed=0):
    cfg = dict(batch_size=batch_size, num_workers=0, dataset=_Noisy(),
               sampler=dict(type='DefaultSampler', shuffle=True),
               collate_fn=dict(type='default_collate'))
    return build_seeded_dataloader(Runner, cfg, stream=0, seed=seed)


def _take(loader, count):
    stream = iter(loader)
    return [next(stream) for _ in range(count)]


def test_seek_equals_replay_across_epochs():
    def make():
        return MultiSourceLoader(dict(image=_loader(3), text=_loader(4)))

    whole = _take(make(), 9)  # image: 4 batches per epoch, text: 3
    for start in (1, 4, 5, 7):
        loader = make()
        loader.seek(start)
        part = _take(loader, 9 - start)
        for got, want in zip(part, whole[start:]):
            for source in ('image', 'text'):
                assert torch.equal(got[source]['index'],
                                   want[source]['index'])
                assert torch.equal(got[source]['draw'], want[source]['draw'])
        assert loader.epochs == dict(image=8 // 4, text=8 // 3)


def test_seeded_samples_restore_the_global_generators():
    loader = _loader(5)
    assert isinstance(loader.dataset, SeededDataset)
    assert isinstance(loader.batch_sampler.sampler, SeededSampler)
    np.random.seed(1)
    expected = np.random.rand()
    np.random.seed(1)
    epoch0 = next(iter(loader))
    assert np.random.rand() == expected  # untouched by the pipeline
    # The same sample draws differently in another epoch.
    loader.batch_sampler.sampler.set_epoch(1)
    batch = next(iter(loader))
    epoch1 = dict(zip(batch['index'].tolist(), batch['draw'].tolist()))
    for index, draw in zip(epoch0['index'].tolist(),
                           epoch0['draw'].tolist()):
        if index in epoch1:
            assert epoch1[index] != draw
    # Plain indices still load as the wrapped dataset does.
    assert loader.dataset[3]['index'] == 3


def test_unseedable_sources_are_replayed():
    # A custom batch sampler keeps mmengine's behaviour: load and discard.
    dataset = _Noisy()
    sampler = DefaultSampler(dataset, shuffle=False)
    batches = torch.utils.data.BatchSampler(sampler, 2, False)
    loader = DataLoader(dataset, batch_sampler=batches,
                        collate_fn=torch.utils.data.default_collate)
    whole = _take(MultiSourceLoader(dict(text=loader)), 7)
    resumed = MultiSourceLoader(dict(text=loader))
    resumed.seek(4)
    assert [b['text']['index'].tolist() for b in _take(resumed, 3)] == \
        [b['text']['index'].tolist() for b in whole[4:]]


class _Empty(_Noisy):

    def __len__(self):
        return 0


def test_empty_source_is_an_error():
    loader = MultiSourceLoader(dict(text=DataLoader(_Empty(), batch_size=2)))
    with pytest.raises(ValueError, match="'text' source yields no batch"):
        next(iter(loader))
