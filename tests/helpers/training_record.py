"""A hook that records what each rank trained on, for the multi-source
distributed and resume tests (also imported by spawned ranks through
``custom_imports=dict(imports=['helpers.training_record'])``)."""
import hashlib
import json
import os.path as osp

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmvlp.registry import HOOKS


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in name order."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module(force=True)
class TrainingRecordHook(Hook):
    """Write ``record_rank{rank}.json`` to the work dir after training.

    Per iteration: the ``sample_idx`` of every source's batch (packed by
    ``PackFields(keys=(..., 'sample_idx'))``) and the losses; at the end the
    digest of the (unwrapped) model's weights.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.steps = []
        self._indices = None

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._indices = {
            source: part['inputs']['sample_idx'].tolist()
            for source, part in data_batch.items()
        }

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self.steps.append(dict(
            iter=batch_idx + 1,
            indices=self._indices,
            losses={key: float(torch.as_tensor(value).detach())
                    for key, value in outputs.items()}))

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        record = dict(rank=get_rank(), world_size=get_world_size(),
                      steps=self.steps, weights=weights_digest(model))
        path = osp.join(runner.work_dir, f'record_rank{get_rank()}.json')
        with open(path, 'w') as file:
            json.dump(record, file)
