"""The main demo's pretraining step (`make demo`) in fp32 and under bf16
autocast, side by side, and its tokenizer's training step.

The demo config (``configs/demo/beit3-tiny-p8_demo-pretrain.py``: tiny
BEiT-3, 24 images + 16 captions + 48 pairs per step) trains on a small
generated copy of the demo data with a random frozen tokenizer. Each round
runs one full training step (data preprocessing, forward, backward, AdamW)
in fp32 and one under ``torch.autocast('cpu', bfloat16)`` with fp32 weights,
as ``AmpOptimWrapper`` does, on the same batches (A/B/A/B). The demo
tokenizer's step (``configs/demo/vqkd-color_vit-tiny-p8_demo-tokenizer.py``,
batch 32) is timed the same way in fp32 (``--no-tokenizer`` skips it), and
the time to load one batch of each pretraining source in the main process
is reported.

Usage::

    python benchmarks/demo_step.py [--threads 2] [--repeats 5]
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

import torch

if __package__ in (None, ''):
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from benchmarks.common import (add_common_args, compare,  # noqa: E402
                               finish, machine_info, median, run_interleaved,
                               setup_threads, time_call)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN = osp.join(REPO, 'configs', 'demo', 'beit3-tiny-p8_demo-pretrain.py')
TOKENIZER = osp.join(REPO, 'configs', 'demo',
                     'vqkd-color_vit-tiny-p8_demo-tokenizer.py')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, 'work_dirs/benchmarks/demo_step.json')
    parser.add_argument('--no-tokenizer', action='store_true',
                        help='leave the tokenizer step out')
    parser.add_argument('--num-train', type=int, default=96,
                        help='generated training scenes')
    return parser.parse_args(argv)


def _pretrain_cfg(root: str):
    from mmengine.config import Config
    cfg = Config.fromfile(PRETRAIN)
    spm = osp.join(root, 'text_spm.model')
    for source, loader in cfg.train_dataloader.items():
        loader.update(num_workers=0, persistent_workers=False)
        dataset = loader.dataset
        if 'data_root' in dataset:
            dataset.data_root = root
        if source == 'text':
            dataset.ann_file = osp.join(root, 'captions_train.jsonl')
            dataset.tokenizer.model_file = spm
        for step in dataset.pipeline:
            if step.type == 'TokenizeText':
                step.model_file = spm
    cfg.model.tokenizer_checkpoint = None  # random frozen tokenizer
    cfg.model.tokenizer.quantizer.kmeans_init = False
    return cfg


def _train_step(model, optimizer, batch, bf16: bool):
    def step():
        data = model.data_preprocessor(batch, True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            losses = model(**data, mode='loss')
        loss = sum(v for k, v in losses.items() if k.startswith('loss'))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return step


def _runner(cfg, work_dir: str):
    from mmengine.runner import Runner
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg)


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = setup_threads(args.threads)
    torch.manual_seed(args.seed)
    import mmvlp  # noqa: F401
    from mmvlp.datasets import make_demo_dataset
    from mmvlp.text import train_sentencepiece
    root = tempfile.mkdtemp(prefix='demo_step_')
    make_demo_dataset(root, num_train=args.num_train, num_val=8, size=48)
    train_sentencepiece(osp.join(root, 'captions_train.jsonl'),
                        osp.join(root, 'text_spm'), vocab_size=160,
                        field='caption', model_type='bpe')
    runner = _runner(_pretrain_cfg(root), osp.join(root, 'pretrain'))
    model = runner.model
    loader = iter(runner.train_loop.dataloader)
    load = time_call(lambda: next(loader), torch.device('cpu'))
    batch = next(loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    print(f'demo pretraining step, {threads} thread(s), batch 24 images + '
          '16 captions + 48 pairs:', flush=True)
    samples = run_interleaved(
        {'fp32': _train_step(model, optimizer, batch, False),
         'bf16': _train_step(model, optimizer, batch, True)},
        args.repeats, args.warmup, torch.device('cpu'))
    result = compare(samples['fp32'], samples['bf16'])
    payload = dict(machine=machine_info(torch.device('cpu')), threads=threads,
                   pretrain=dict(samples=samples, **result),
                   data_load_s=load['wall_s'])
    wall = result['wall_s']
    headline = dict(fp32_s=round(wall['baseline_median'], 3),
                    bf16_s=round(wall['candidate_median'], 3),
                    bf16_speedup=round(wall['speedup'], 2),
                    bf16_speedup_cpu=round(result['cpu_s']['speedup'], 2),
                    data_load_s=round(load['wall_s'], 3))
    if not args.no_tokenizer:
        from mmengine.config import Config
        cfg = Config.fromfile(TOKENIZER)
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[key].update(num_workers=0, persistent_workers=False)
            cfg[key].dataset.data_root = root
        tok = _runner(cfg, osp.join(root, 'tokenizer'))
        tok_batch = next(iter(tok.train_loop.dataloader))
        tok_opt = torch.optim.AdamW(tok.model.parameters(), lr=1e-4)

        def tok_step():
            data = tok.model.data_preprocessor(tok_batch, True)
            losses = tok.model(**data, mode='loss')
            sum(v for k, v in losses.items()
                if k.startswith('loss')).backward()
            tok_opt.step()
            tok_opt.zero_grad()

        print('demo tokenizer step, batch 32, fp32:', flush=True)
        tok_samples = run_interleaved({'tokenizer': tok_step}, args.repeats,
                                      args.warmup, torch.device('cpu'))
        payload['tokenizer'] = dict(samples=tok_samples)
        headline['tokenizer_s'] = round(median(
            [s['wall_s'] for s in tok_samples['tokenizer']]), 3)
    finish('demo_step', payload, args.out, headline)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('PYTHONHASHSEED', '0')
    sys.exit(main())
