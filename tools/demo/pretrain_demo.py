"""The main demo (`make demo`): generated captioned scenes -> text and visual
tokenizers -> BEiT-3 pretraining on images, captions and pairs -> held-out
metrics against the strongest baselines, and a picture of what it learned.

Usage:
    python tools/demo/pretrain_demo.py [--work-dir work_dirs/demo]
        [--seed 0] [--check] [--cfg-options KEY=VALUE ...]
        [--tokenizer-cfg-options KEY=VALUE ...]

Steps, each its own process (the commands are printed):

1. ``tools/data/make_demo_data.py``: 3000 + 300 scenes of 48 px in
   ``data/demo_pretrain`` (skipped when it already holds this dataset: it
   is deterministic);
2. ``tools/train_text_tokenizer.py``: a 160-piece BPE SentencePiece model
   of the training captions (skipped likewise);
3. ``tools/train.py`` on
   ``configs/demo/vqkd-color_vit-tiny-p8_demo-tokenizer.py``: the 12-code
   colour VQ-KD tokenizer (``<work-dir>/tokenizer``);
4. ``tools/train.py`` on ``configs/demo/beit3-tiny-p8_demo-pretrain.py``
   (``<work-dir>/pretrain``, with ``last_checkpoint``);
5. ``tools/analysis_tools/eval_demo_pretrain.py``: ``<work-dir>/metrics.json``
   and ``<work-dir>/what_it_learned.png``.

``--seed`` sets the training randomness of steps 3 and 4 (the data and the
evaluation masks stay fixed); ``--cfg-options`` go to step 4 (and the
evaluation), ``--tokenizer-cfg-options`` to step 3. Wall and CPU
seconds of every step are printed at the end and written to
``<work-dir>/timings.json``.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time
from typing import Dict, List

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOKENIZER = 'configs/demo/vqkd-color_vit-tiny-p8_demo-tokenizer.py'
PRETRAIN = 'configs/demo/beit3-tiny-p8_demo-pretrain.py'
DATA = 'data/demo_pretrain'  # where both configs read it
DATA_ARGS = dict(num_train=3000, num_val=300, size=48)
SPM_ARGS = ['--vocab-size', '160', '--model-type', 'bpe', '--field',
            'caption']


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--seed', type=int, default=0,
                        help='training seed of the tokenizer and the '
                        'pretraining')
    parser.add_argument('--check', action='store_true',
                        help='exit 1 when a claim misses its threshold')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='overrides of the pretraining config')
    parser.add_argument('--tokenizer-cfg-options', nargs='+', default=[],
                        help='overrides of the visual tokenizer config')
    return parser.parse_args(argv)


class Steps:
    """Runs the steps as processes and records their wall and CPU time."""

    def __init__(self) -> None:
        self.timings: Dict[str, dict] = {}

    def run(self, name: str, args: List[str]) -> None:
        command = [sys.executable] + args
        print(f'\n== {name}: {" ".join(args)}', flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.time()
        subprocess.run(command, cwd=REPO, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.timings[name] = dict(
            wall_s=round(time.time() - start, 1),
            cpu_s=round(after.ru_utime - before.ru_utime +
                        after.ru_stime - before.ru_stime, 1))

    def skip(self, name: str, why: str) -> None:
        print(f'\n== {name}: skipped ({why})', flush=True)
        self.timings[name] = dict(wall_s=0., cpu_s=0., skipped=why)

    def report(self, path: str) -> None:
        total = {key: round(sum(t[key] for t in self.timings.values()), 1)
                 for key in ('wall_s', 'cpu_s')}
        self.timings['total'] = total
        print(f'\n{"step":<22}{"wall s":>9}{"CPU s":>9}')
        for name, timing in self.timings.items():
            print(f'{name:<22}{timing["wall_s"]:>9.1f}{timing["cpu_s"]:>9.1f}')
        with open(path, 'w') as f:
            json.dump(self.timings, f, indent=2)


def data_stamp() -> dict:
    """What the generated data depends on: the arguments and the source of
    the generator and of the SentencePiece training."""
    sources = {}
    for path in ('mmvlp/datasets/demo_data.py', 'mmvlp/text/training.py'):
        with open(osp.join(REPO, path), 'rb') as f:
            sources[path] = hashlib.sha1(f.read()).hexdigest()
    return dict(DATA_ARGS, spm=SPM_ARGS, sources=sources)


def data_is_current(data: str) -> bool:
    """Whether ``data`` holds the demo dataset and its text model as this
    script makes them (both are deterministic)."""
    stamp = osp.join(data, 'demo_stamp.json')
    if not osp.isfile(stamp) or not osp.isfile(
            osp.join(data, 'text_spm.model')):
        return False
    with open(stamp) as f:
        return json.load(f) == data_stamp()


def main(argv=None) -> int:
    args = parse_args(argv)
    work_dir, data = args.work_dir, DATA
    os.makedirs(osp.join(REPO, work_dir), exist_ok=True)
    steps = Steps()
    seed = [f'randomness.seed={args.seed}']
    tokenizer_ckpt = f'{work_dir}/tokenizer/last_checkpoint'
    model_opts = [f'model.tokenizer_checkpoint={tokenizer_ckpt}']
    if data_is_current(osp.join(REPO, data)):
        steps.skip('data', f'{data} holds it')
        steps.skip('text_tokenizer', f'{data}/text_spm.model exists')
    else:
        steps.run('data', [
            'tools/data/make_demo_data.py', '--out', data, '--num-train',
            str(DATA_ARGS['num_train']), '--num-val',
            str(DATA_ARGS['num_val']), '--size', str(DATA_ARGS['size'])])
        steps.run('text_tokenizer', [
            'tools/train_text_tokenizer.py', f'{data}/captions_train.jsonl',
            f'{data}/text_spm'] + SPM_ARGS)
        with open(osp.join(REPO, data, 'demo_stamp.json'), 'w') as f:
            json.dump(data_stamp(), f)
    steps.run('visual_tokenizer', [
        'tools/train.py', TOKENIZER, '--work-dir', f'{work_dir}/tokenizer',
        '--cfg-options'] + seed + args.tokenizer_cfg_options)
    steps.run('pretrain', [
        'tools/train.py', PRETRAIN, '--work-dir', f'{work_dir}/pretrain',
        '--cfg-options'] + seed + model_opts + args.cfg_options)
    with open(osp.join(REPO, work_dir, 'pretrain', 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    steps.run('evaluate', [
        'tools/analysis_tools/eval_demo_pretrain.py', PRETRAIN, checkpoint,
        '--data', data, '--out', f'{work_dir}/metrics.json', '--figure',
        f'{work_dir}/what_it_learned.png', '--cfg-options'] + model_opts +
        args.cfg_options +
        (['--check'] if args.check else []))
    steps.report(osp.join(REPO, work_dir, 'timings.json'))
    print(f'\nwrote {work_dir}/metrics.json, {work_dir}/what_it_learned.png, '
          f'{work_dir}/timings.json; the pretrained model: {checkpoint}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f'\nstep failed: {" ".join(error.cmd[1:])} (exit '
              f'{error.returncode})', file=sys.stderr)
        sys.exit(1)
