"""Safe loading of mmengine checkpoints on torch >= 2.6 (docs/compatibility.md).

mmengine 0.10.7 + torch 2.14 cannot resume or ``load_from`` its own
checkpoints with ``weights_only=True``; mmvlp allow-lists exactly the types
those checkpoints carry and refuses everything else.
"""
import os
import pickle
import shutil

import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint

import mmvlp  # noqa: F401  (applies the fixes)
from mmvlp.compat.torch_load import UnsafeCheckpointError, safe_torch_load


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(1) - targets)**2).mean())
        return out


class ToyData(torch.utils.data.Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(4, generator=generator),
                    targets=torch.tensor(float(index % 3)))


def _runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                             begin=0, end=4),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        log_level='WARNING',
        **kwargs)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('run')
    runner = _runner(work_dir, max_iters=4)
    runner.train()
    return work_dir, runner


def test_checkpoint_needs_the_allow_list(trained):
    """A full mmengine checkpoint is not loadable by plain safe torch.load;
    mmvlp does not switch safe loading off globally."""
    work_dir, _ = trained
    with pytest.raises(pickle.UnpicklingError):
        torch.load(work_dir / 'iter_4.pth', weights_only=True)
    checkpoint = safe_torch_load(work_dir / 'iter_4.pth')
    assert checkpoint['meta']['iter'] == 4
    buffers = checkpoint['message_hub']['log_scalars']
    assert isinstance(buffers['train/loss'], HistoryBuffer)
    assert len(buffers['train/loss'].data[0]) == 4


def test_resume_continues(trained, tmp_path):
    work_dir, first = trained
    resumed = _runner(work_dir, max_iters=6, resume=True)
    resumed.train()
    assert resumed.iter == 6
    # The message hub's history came back from the checkpoint and grew.
    loss = resumed.message_hub.get_scalar('train/loss')
    assert len(loss.data[0]) == 6
    # Optimiser state was restored: AdamW's step counter continued from 4.
    state = next(iter(resumed.optim_wrapper.optimizer.state.values()))
    assert int(state['step']) == 6


def test_load_from(trained, tmp_path):
    work_dir, first = trained
    runner = _runner(tmp_path, max_iters=1,
                     load_from=str(work_dir / 'iter_4.pth'))
    runner.load_or_resume()
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(runner.model.state_dict()[name],
                                   safe_torch_load(work_dir / 'iter_4.pth')
                                   ['state_dict'][name])
    assert runner.iter == 0  # load_from loads weights only


def test_history_buffer_pickles_data_only():
    buffer = HistoryBuffer()
    buffer.update(1.5)
    data = pickle.dumps(buffer)
    assert b'getattr' not in data and b'statistics_methods' not in data
    restored = pickle.loads(data)
    assert restored.mean() == 1.5 and restored.current() == 1.5


class _Payload:
    """Pickles as a call of os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_refuses_pickled_code(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': ToyModel().state_dict(),
                'meta': {'note': _Payload(marker)}}, path)
    # The payload is live: unsafe loading runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError,
                       match=r'carries a pickled `posix\.system`') as info:
        load_checkpoint(ToyModel(), str(path), logger='silent')
    assert 'Nothing from it was executed' in str(info.value)
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        safe_torch_load(path)
    with pytest.raises(UnsafeCheckpointError):
        _runner(tmp_path, max_iters=1, load_from=str(path)).load_or_resume()
    # --resume: the work dir's last checkpoint is the crafted file.
    shutil.copy(path, tmp_path / 'iter_1.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_1.pth'))
    with pytest.raises(UnsafeCheckpointError):
        _runner(tmp_path, max_iters=1, resume=True).load_or_resume()
    assert not marker.exists()


def test_refuses_old_getattr_checkpoints(tmp_path):
    """Checkpoints whose message hub pickled getattr get a specific hint."""
    path = tmp_path / 'old.pth'
    torch.save({'meta': {'fn': getattr(HistoryBuffer, 'min')},
                'state_dict': {}}, path)
    with pytest.raises(UnsafeCheckpointError, match='re-save'):
        load_checkpoint(ToyModel(), str(path), logger='silent')
