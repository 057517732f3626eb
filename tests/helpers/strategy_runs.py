"""Train the tiny BEiT-3 pretraining config under several strategies in one
launch and record what each run did (``tests/test_strategies.py``).

Every process launch costs seconds of imports on a small machine, so one
launch runs many trainings one after the other in the same process group:

    python -m torch.distributed.run --nproc_per_node 2 \
        tests/helpers/strategy_runs.py SPEC.json      # two processes
    python tests/helpers/strategy_runs.py SPEC.json   # one process

``SPEC.json``: ``{"data_root": ..., "out": ..., "runs": [RUN, ...]}``, a RUN
being ``{"name", "strategy" (ddp | zero1 | zero2 | zero3 | fsdp |
fsdp_sharded), "precision" (fp32 | bf16), "batch" (per source and
process), "accumulate", "max_iters", "checkpoint_interval", "with_cp",
"clip" (max norm or null), "resume_from" (a checkpoint path or null),
"consolidate" (bool, sharded FSDP only), "arch" (optional backbone arch,
default the tiny one; benchmarks/gpu_dist_check.py uses 'base')}``.

Each run writes ``OUT/NAME/record.json`` on rank 0: per iteration the loss
averaged over the ranks, the number of forward calls of the backbone's
Multiway layers (recomputation included) and the bytes autograd saved for
backward during the forward pass (outside checkpointed regions; parameters
not counted); and the final checkpoint's path.
"""
import json
import os
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path[:0] = [osp.dirname(HERE), REPO]

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

import mmvlp  # noqa: E402,F401
from mmvlp.registry import HOOKS  # noqa: E402
from mmvlp.runtime import (build_runner, finish_launch, report_batch,  # noqa
                           set_accumulation, setup_launch)

STRATEGY_BASES = dict(
    zero1='deepspeed_zero1', zero2='deepspeed_zero2',
    zero3='deepspeed_zero3', fsdp='fsdp', fsdp_sharded='fsdp_sharded')
#: The tiny backbone of these runs (a few ms per step on one CPU core).
TINY_ARCH = dict(embed_dims=64, num_layers=2, num_heads=2,
                 feedforward_channels=128)


def unwrap(model):
    """The model inside DDP / FSDP / the DeepSpeed engine wrapper."""
    while True:
        inner = getattr(model, 'module', None)
        if inner is None:
            inner = getattr(model, 'model', None)
            if inner is None or not isinstance(inner, torch.nn.Module):
                return model
        model = inner


def _is_param_storage(tensor, params) -> bool:
    try:
        ptr = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return False
    return ptr in params


class SavedBytes:
    """Bytes autograd keeps for backward while active (parameters and
    tensors sharing their storage excluded)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.bytes = 0

    def __enter__(self):
        self.params = {p.untyped_storage().data_ptr()
                       for p in self.model.parameters() if p.numel()}

        def pack(tensor):
            if not _is_param_storage(tensor, self.params):
                self.bytes += tensor.numel() * tensor.element_size()
            return tensor

        self.hooks = torch.autograd.graph.saved_tensors_hooks(
            pack, lambda tensor: tensor)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)


@HOOKS.register_module(force=True)
class StrategyRecordHook(Hook):
    """Record the global loss, layer forward calls and saved bytes per
    iteration; write ``record.json`` to the work dir on rank 0."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.steps = []
        self.calls = 0

    def before_train(self, runner) -> None:
        model = unwrap(runner.model)
        self.partition = zero3_partition(model)
        self.tokenizer = tokenizer_placement(model)
        for name, module in model.named_modules():
            if (type(module).__name__ == 'MultiwayTransformerLayer'
                    and 'backbone' in name):
                # (A pre-hook: a recomputation stops once it has rebuilt
                # what backward needs, before the forward hooks run.)
                module.register_forward_pre_hook(self._count)
        self.saved = SavedBytes(model)
        loss = model.loss

        def measured_loss(batch):
            with self.saved:
                return loss(batch)

        model.loss = measured_loss

    def _count(self, module, args) -> None:
        self.calls += 1

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.calls = 0
        self.saved.bytes = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        loss = torch.as_tensor(outputs['loss'], dtype=torch.float64).detach()
        loss = loss.clone().cpu()
        if dist.is_initialized():
            dist.all_reduce(loss)
            loss /= dist.get_world_size()
        self.steps.append(dict(iter=batch_idx + 1, loss=loss.item(),
                               layer_calls=self.calls,
                               saved_bytes=self.saved.bytes))

    def after_train(self, runner) -> None:
        if runner.rank != 0:
            return
        with open(osp.join(runner.work_dir, 'record.json'), 'w') as file:
            json.dump(dict(steps=self.steps, world_size=runner.world_size,
                           zero3_partition=self.partition,
                           tokenizer=self.tokenizer), file)


def tokenizer_placement(model) -> dict:
    """Where the frozen tokenizer of the (unwrapped) model is: its
    parameter dtypes, whether it is still in the module tree (the wrapper
    sees it), whether any of its parameters is sharded (ZeRO-3 attributes,
    FSDP flat parameters) and the model's ``target_autocast``."""
    tokenizer = model.tokenizer
    params = list(tokenizer.parameters())
    sharded = any(hasattr(p, 'ds_numel') or
                  type(p).__name__ == 'FlatParameter' or
                  hasattr(p, '_fsdp_flattened') for p in params)
    autocast = getattr(model, 'target_autocast', None)
    return dict(dtypes=sorted({str(p.dtype) for p in params}),
                in_module_tree='tokenizer' in model._modules,
                sharded=sharded,
                target_autocast=None if autocast is None else str(autocast))


def zero3_partition(model) -> dict:
    """How DeepSpeed ZeRO-3 holds the parameters between steps: how many
    stay whole on every rank (``ds_persist``), how many are partitioned
    (the module's tensor is empty, this rank keeps ``ds_tensor``) and the
    elements this rank keeps of each partitioned one; empty for other
    strategies."""
    params = [p for p in model.parameters() if hasattr(p, 'ds_numel')]
    if not params:
        return {}
    partitioned = [p for p in params
                   if not p.ds_persist and p.data.numel() == 0]
    return dict(parameters=len(params),
                persistent=sum(bool(p.ds_persist) for p in params),
                partitioned=len(partitioned),
                local_elements=sum(p.ds_tensor.numel() for p in partitioned),
                elements=sum(p.ds_numel for p in partitioned))


def speed_up_runner_setup() -> None:
    """Skip what costs seconds per run and is not under test here: the
    environment report (subprocesses), yapf-formatting the config for the
    log and every checkpoint's meta, and the datasets' serialisation (a
    full gc.collect each)."""
    from mmengine.runner import FlexibleRunner, Runner
    Runner._log_env = FlexibleRunner._log_env = lambda self, *a, **k: None
    Config.pretty_text = property(lambda self: repr(self.to_dict()))


def tiny_cfg(data_root: str, run: dict, out: str) -> Config:
    """The demo pretraining config shrunk for the strategy tests."""
    from test_pretrain_runner import _cfg
    work_dir = osp.join(out, run['name'])
    cfg = _cfg(data_root, work_dir, max_iters=run['max_iters'])
    cfg.model.backbone.update(arch=run.get('arch', TINY_ARCH),
                              drop_path_rate=0.,
                              with_cp=run.get('with_cp', False))
    for loader in cfg.train_dataloader.values():
        loader.batch_size = run['batch']
        loader.dataset.serialize_data = False
    # AdamW keeps two moments per parameter, which a resume must restore
    # (FSDP on CPU used to save one in place of the other); with eps=1,
    # far above sqrt(exp_avg_sq), its step is close to lr * gradient, so a
    # wrong gradient scale (a missing average over ranks or micro-batches)
    # shows in the losses instead of being normalised away.
    cfg.optim_wrapper = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=run.get('lr', 0.05),
                       betas=(0.9, 0.98), eps=1., weight_decay=0.05))
    if run.get('clip'):
        cfg.optim_wrapper.clip_grad = dict(max_norm=run['clip'])
    strategy = run['strategy']
    if strategy != 'ddp':
        base = Config.fromfile(osp.join(
            REPO, 'configs', '_base_', 'strategies',
            STRATEGY_BASES[strategy] + '.py'))
        cfg.strategy = base.strategy
        if strategy.startswith('zero'):
            # SGD is not one of deepspeed's tested ZeRO optimizers.
            cfg.strategy.config = dict(zero_allow_untested_optimizer=True)
            if run.get('precision', 'fp32') == 'fp32':
                cfg.strategy.bf16 = dict(enabled=False)
                cfg.strategy.inputs_to_half = None
            if strategy == 'zero3':
                # Every tiny parameter is below DeepSpeed's default
                # persistence threshold (1e5 elements), which would keep
                # them all whole on every rank: partition them all.
                cfg.strategy.zero_optimization.update(
                    stage3_param_persistence_threshold=0)
        elif run.get('precision', 'fp32') == 'fp32':
            # FSDP: the base file's bf16 policy (CPU hosts drop it anyway).
            cfg.strategy.model_wrapper.pop('mixed_precision', None)
    set_accumulation(cfg, run.get('accumulate', 1))
    cfg.default_hooks.checkpoint.interval = run.get(
        'checkpoint_interval') or cfg.train_cfg.max_iters
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.default_hooks.logger.interval = 1
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='StrategyRecordHook')]
    cfg.experiment_name = run['name']
    if run.get('resume_from'):
        cfg.resume = True
        cfg.load_from = run['resume_from']
    return cfg


def record_fsdp_offload_probe(runner) -> None:
    """Gather the full optimizer state as mmengine 0.10.7 configures it
    ('full': offload_to_cpu=True) and record, on rank 0, whether torch
    returned ``exp_avg`` equal to ``exp_avg_sq`` for every parameter
    (``fsdp_offload_probe.json``): the bug mmvlp works around on CPU."""
    from torch.distributed.fsdp import (FullOptimStateDictConfig,
                                        FullStateDictConfig,
                                        FullyShardedDataParallel,
                                        StateDictType)
    model = runner.model
    with FullyShardedDataParallel.state_dict_type(
            model, StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(rank0_only=True, offload_to_cpu=True),
            FullOptimStateDictConfig(rank0_only=True, offload_to_cpu=True)):
        state = FullyShardedDataParallel.optim_state_dict(
            model, runner.optim_wrapper.optimizer)
    if runner.rank == 0:
        moments = [s for s in state['state'].values() if 'exp_avg' in s]
        swapped = bool(moments) and all(
            torch.equal(s['exp_avg'], s['exp_avg_sq']) for s in moments)
        with open(osp.join(runner.work_dir, 'fsdp_offload_probe.json'),
                  'w') as file:
            json.dump(dict(exp_avg_equals_exp_avg_sq=swapped,
                           parameters=len(moments)), file)


def final_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as file:
        return file.read().strip()


def main(spec_file: str) -> None:
    with open(spec_file) as file:
        spec = json.load(file)
    speed_up_runner_setup()
    for run in spec['runs']:
        start = time.time()
        cfg = tiny_cfg(spec['data_root'], run, spec['out'])
        # One process: 'none', except that a DeepSpeed run starts a
        # one-process group itself (setup_launch); later runs join it.
        cfg.launcher = 'pytorch' if 'WORLD_SIZE' in os.environ else 'none'
        setup_launch(cfg)
        report_batch(cfg)
        runner = build_runner(cfg)
        runner.train()
        if run.get('probe_fsdp_offload'):
            record_fsdp_offload_probe(runner)
        if run.get('consolidate'):
            from mmvlp.checkpoint.consolidation import (
                consolidate_fsdp_sharded, save_consolidated)
            path = final_checkpoint(runner.work_dir)
            state, meta = consolidate_fsdp_sharded(cfg, path)
            if state is not None:
                save_consolidated(state, osp.join(runner.work_dir,
                                                  'consolidated.pth'),
                                  path, meta)
        if dist.is_initialized():
            dist.barrier()
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(f'run {run["name"]}: {time.time() - start:.1f} s',
                  flush=True)
    finish_launch()


if __name__ == '__main__':
    main(sys.argv[1])
