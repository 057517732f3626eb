"""Compare the contrastive-loss balancing rules of QLIP stage 1 side by side.

Usage:
    python tools/analysis_tools/compare_bsq_balancing.py
        [--config configs/tokenizers/bsqvit-text_vit-tiny-p8_demo.py]
        [--iters 1000] [--interval 10] [--momentum 0.9]
        [--variants per_step,every_k,every_k_ema,fixed]
        [--fixed-from 50] [--timing-rounds 5] [--timing-steps 10]
        [--work-dir work_dirs/bsq_balancing] [--out .../results.json]

Each variant trains the config from the same seed for ``--iters``
iterations with the real Runner, then is evaluated on the held-out split:
reconstruction PSNR (``ReconstructionMetric``) and image<->caption retrieval
R@1 of the aligned embeddings (``captions_val.jsonl``, one caption per
image). Variants:

* ``per_step``: the gradient-norm ratio measured on every step (two extra
  partial backward passes per step);
* ``every_k``: measured every ``--interval`` steps, reused in between;
* ``every_k_ema``: the same with an EMA (``--momentum``) of the measurements;
* ``fixed``: a constant weight, the mean ``contrastive_weight`` logged by
  ``per_step`` over its first ``--fixed-from`` iterations (so ``per_step``
  runs first).

Time per step is measured apart from the training runs, interleaved: one
model per variant, ``--timing-rounds`` rounds of ``--timing-steps`` training
steps of each variant in turn on the same batch, median seconds per step.
Writes a JSON file and prints a table.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import mmvlp  # noqa: F401  (compatibility fixes, registries)
from mmvlp.registry import DATASETS

VARIANTS = ('per_step', 'every_k', 'every_k_ema', 'fixed')


def variant_model_cfg(name: str, args, fixed_weight: float) -> dict:
    """The BSQViT balancing arguments of a variant."""
    if name == 'per_step':
        return dict(balance_by_grad=True, balance_interval=1,
                    balance_momentum=0.)
    if name == 'every_k':
        return dict(balance_by_grad=True, balance_interval=args.interval,
                    balance_momentum=0.)
    if name == 'every_k_ema':
        return dict(balance_by_grad=True, balance_interval=args.interval,
                    balance_momentum=args.momentum)
    return dict(balance_by_grad=False, contrastive_weight=fixed_weight)


def build_cfg(args, name: str, fixed_weight: float) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.model.update(variant_model_cfg(name, args, fixed_weight))
    iters = args.iters
    cfg.train_cfg.update(max_iters=iters, val_interval=iters)
    warmup = min(50, iters // 2)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
             end=warmup),
        dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
             begin=warmup, end=iters),
    ]
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 50
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if h.type != 'TokenizerVisualizationHook']
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.log_level = 'WARNING'
    return cfg


def retrieval_r1(model, cfg: Config, batch_size: int = 64
                 ) -> Dict[str, float]:
    """Image->text and text->image R@1 on the held-out captions."""
    train_ds = cfg.train_dataloader.dataset
    tail = [step for step in train_ds.pipeline
            if step.type in ('TokenizeText', 'mmpretrain.PackInputs')]
    test_pipeline = [step for step in cfg.val_dataloader.dataset.pipeline
                     if step.type != 'mmpretrain.PackInputs']
    dataset = DATASETS.build(dict(
        type='ImageTextDataset', data_root=train_ds.data_root,
        ann_file='captions_val.jsonl', pipeline=test_pipeline + tail,
        test_mode=True))
    images, texts = [], []
    model.eval()
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in
                 range(start, min(start + batch_size, len(dataset)))]
        data = model.data_preprocessor(pseudo_collate(items), False)
        samples = data['data_samples']
        ids = torch.stack([s.text_ids for s in samples])
        padding = torch.stack([s.text_padding_mask for s in samples]).bool()
        images.append(model.embed_images(data['inputs']))
        texts.append(model.embed_texts(ids, padding))
    similarity = torch.cat(images) @ torch.cat(texts).t()
    truth = torch.arange(similarity.shape[0])
    return dict(
        i2t_r1=100. * (similarity.argmax(1) == truth).float().mean().item(),
        t2i_r1=100. * (similarity.argmax(0) == truth).float().mean().item())


def train_variant(args, name: str, fixed_weight: float) -> Dict[str, float]:
    cfg = build_cfg(args, name, fixed_weight)
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    hub = runner.message_hub
    weights = hub.get_scalar('train/contrastive_weight').data[0].tolist()
    result = dict(
        variant=name, iters=args.iters, train_wall_s=wall,
        psnr=hub.get_scalar('val/recon/psnr').current(),
        ssim=hub.get_scalar('val/recon/ssim').current(),
        first_weights_mean=statistics.fmean(weights[:args.fixed_from]),
        last_weight=weights[-1],
        **model_cfg_summary(cfg))
    result.update(retrieval_r1(runner.model, cfg))
    return result


def model_cfg_summary(cfg: Config) -> dict:
    keys = ('balance_by_grad', 'balance_interval', 'balance_momentum',
            'contrastive_weight')
    return {k: cfg.model[k] for k in keys if k in cfg.model}


def interleaved_timing(args, names: List[str],
                       fixed_weight: float) -> Dict[str, float]:
    """Median seconds per training step of each variant, interleaved."""
    models, batch = {}, None
    for name in names:
        cfg = build_cfg(args, name, fixed_weight)
        cfg.work_dir = osp.join(args.work_dir, 'timing', name)
        runner = Runner.from_cfg(cfg)
        if batch is None:
            loader = dict(cfg.train_dataloader, num_workers=0,
                          persistent_workers=False)
            batch = next(iter(Runner.build_dataloader(loader)))
        optim = runner.build_optim_wrapper(cfg.optim_wrapper)
        models[name] = (runner.model.train(), optim)
    samples = {name: [] for name in names}
    for round_ in range(args.timing_rounds + 1):  # round 0: warm-up
        for name in names:
            model, optim = models[name]
            start = time.perf_counter()
            for _ in range(args.timing_steps):
                model.train_step(batch, optim)
            if round_:
                samples[name].append(
                    (time.perf_counter() - start) / args.timing_steps)
    return {name: statistics.median(values)
            for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=osp.join(
        'configs', 'tokenizers', 'bsqvit-text_vit-tiny-p8_demo.py'))
    parser.add_argument('--iters', type=int, default=1000)
    parser.add_argument('--interval', type=int, default=10)
    parser.add_argument('--momentum', type=float, default=0.9)
    parser.add_argument('--variants', default=','.join(VARIANTS))
    parser.add_argument('--fixed-from', type=int, default=50,
                        help='iterations of per_step whose mean weight '
                        'becomes the fixed weight')
    parser.add_argument('--timing-rounds', type=int, default=5)
    parser.add_argument('--timing-steps', type=int, default=10)
    parser.add_argument('--work-dir', default='work_dirs/bsq_balancing')
    parser.add_argument('--out', default=None,
                        help='JSON results (default: WORK_DIR/results.json)')
    args = parser.parse_args()
    names = [n for n in args.variants.split(',') if n]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f'unknown variants {sorted(unknown)}; choose from '
                     f'{VARIANTS}')
    if 'fixed' in names and 'per_step' not in names:
        parser.error('the fixed variant takes its weight from per_step; '
                     'list per_step too')
    names.sort(key=VARIANTS.index)
    init_default_scope('mmvlp')
    torch.manual_seed(0)
    results, fixed_weight = [], 1.
    for name in names:
        result = train_variant(args, name, fixed_weight)
        if name == 'per_step':
            fixed_weight = result['first_weights_mean']
        results.append(result)
        print(json.dumps(result), flush=True)
    timing = interleaved_timing(args, names, fixed_weight)
    for result in results:
        result['s_per_step'] = timing[result['variant']]
        result['speedup_vs_per_step'] = (
            timing.get('per_step', float('nan')) / timing[result['variant']])
    out = args.out or osp.join(args.work_dir, 'results.json')
    os.makedirs(osp.dirname(out) or '.', exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(args=vars(args), threads=torch.get_num_threads(),
                       results=results), f, indent=2)
    print(f'\n{"variant":<12} {"PSNR":>6} {"i2t R@1":>8} {"t2i R@1":>8} '
          f'{"s/step":>7} {"speedup":>7} weight')
    for r in results:
        print(f'{r["variant"]:<12} {r["psnr"]:>6.2f} {r["i2t_r1"]:>8.1f} '
              f'{r["t2i_r1"]:>8.1f} {r["s_per_step"]:>7.3f} '
              f'{r["speedup_vs_per_step"]:>7.2f} {r["last_weight"]:.3g}')
    print(f'results: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
