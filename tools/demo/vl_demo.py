"""The vision-language demo: fine-tune the demo-pretrained tiny BEiT-3 and
the same model from scratch, with the same budget, on generated image-text
retrieval, VQA and captioning.

Usage:
    python tools/demo/vl_demo.py [--pretrained CKPT]
        [--work-dir work_dirs/demo_vl] [--tasks retrieval vqa caption]
        [--data-root data/demo_vl] [--text-model SPM] [--max-iters N]
        [--val-samples N] [--check]

Every run is ``tools/train.py CONFIG`` in its own process (the helpers of
``tools/demo/transfer_demo.py``) with mmpretrain's retrieval loop and
``RetrievalRecall``, mmpretrain's ``VQAAcc`` and mmvlp's ``CaptionMetric``
(pycocoevalcap CIDEr) on the held-out scenes. The scratch run differs only by
``model.backbone.init_cfg=None``. Writes ``metrics.json``::

    {"retrieval_r1": {"pretrained": x, "scratch": y},   # %, mean of i2t, t2i
     "vqa_acc": {...},                                   # %, VQA accuracy
     "caption_cider": {...},                             # CIDEr (not %)
     "_chance": {...}, "_runs": {...}}

and prints them with the chance levels (retrieval: 100 / number of images;
VQA: always the most frequent training answer; captioning: the CIDEr of a
random training caption). ``--check`` exits 1 unless pretrained > scratch on
every task. ``--max-iters`` / ``--val-samples`` shorten the runs (a smoke
test; the comparison then means little).
"""
import argparse
import os.path as osp
import random
import sys
import time
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import transfer_demo  # noqa: E402  (shared helpers of the fine-tuning demos)
from transfer_demo import REPO  # noqa

# Each task: its config, the validation keys averaged into its metric, the
# metric's name, and what points the config to other data.
VL_TASKS = {
    'retrieval': dict(
        config='configs/demo/beit3-tiny-p8_demo-vl-retrieval.py',
        keys=('i2t/retrieval/Recall@1', 't2i/retrieval/Recall@1'),
        metric='retrieval_r1'),
    'vqa': dict(
        config='configs/demo/beit3-tiny-p8_demo-vl-vqa.py',
        keys=('VQA/acc', ), metric='vqa_acc'),
    'caption': dict(
        config='configs/demo/beit3-tiny-p8_demo-vl-caption.py',
        keys=('caption/CIDEr', ), metric='caption_cider'),
}
DATA_MAKE = ['tools/data/make_demo_vl_data.py', '--out', '{data}']
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def parse_args() -> argparse.Namespace:
    parser = transfer_demo.demo_parser(
        __doc__.split('\n\n')[0], 'work_dirs/demo_vl', list(VL_TASKS),
        'data/demo_vl', 'generated here when missing (relative to the '
        'current directory, like --work-dir)')
    parser.add_argument('--text-model', default=None,
                        help='SentencePiece model of the pretraining '
                        '(default: the configs\' data/demo_pretrain one)')
    parser.add_argument('--val-samples', type=int, default=None,
                        help='evaluate on the first N held-out samples only')
    return parser.parse_args()


def path_options(config: str, data_root: str,
                 text_model: Optional[str]) -> List[str]:
    """``--cfg-options`` that point a VL demo config at another data root
    and text model (found in the config's loaders, pipelines and model)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, config))
    options = []
    for loader in LOADERS:
        options.append(f'{loader}.dataset.data_root={data_root}')
        if text_model is None:
            continue
        for index, step in enumerate(cfg[loader].dataset.pipeline):
            if step.get('type') == 'TokenizeText':
                options.append(f'{loader}.dataset.pipeline.{index}.'
                               f'model_file={text_model}')
    if cfg.model.type == 'BEiT3VQA':
        options.append(
            f'model.answers={osp.join(data_root, "vqa", "answer2label.txt")}')
    if text_model is not None and cfg.model.get('tokenizer'):
        options.append(f'model.tokenizer.model_file={text_model}')
    return options


def smoke_options(max_iters: Optional[int],
                  val_samples: Optional[int]) -> List[str]:
    """Options of a shortened run: small batches, no worker processes,
    a subset of the held-out data."""
    options = []
    if max_iters is not None:
        options += ['train_dataloader.batch_size=8']
    if val_samples is not None:
        options += [f'{loader}.dataset.indices={val_samples}'
                    for loader in LOADERS[1:]]
    if max_iters is not None or val_samples is not None:
        for loader in LOADERS:
            options += [f'{loader}.num_workers=0',
                        f'{loader}.persistent_workers=False']
    return options


def chance_levels(data_root: str, val_samples: Optional[int]
                  ) -> Dict[str, float]:
    """What the metrics are without learning anything (see the module
    docstring)."""
    from mmvlp.datasets.demo_vl import majority_answer_accuracy
    from mmvlp.datasets.vl_formats import load_caption_images
    from mmvlp.evaluation import caption_scores
    ann = osp.join(data_root, 'dataset_demo_vl.json')
    val, _ = load_caption_images(ann, splits=('val', ))
    train, _ = load_caption_images(ann, splits=('train', ))
    if val_samples is not None:
        val = val[:val_samples]
    rng = random.Random(0)
    pool = [c for image in train for c in image['captions']]
    references = {i: image['captions'] for i, image in enumerate(val)}
    guesses = {i: rng.choice(pool) for i in references}
    vqa = osp.join(data_root, 'vqa')
    return dict(
        retrieval_r1=100. / len(val),
        vqa_acc=majority_answer_accuracy(
            osp.join(vqa, 'annotations_train.json'),
            osp.join(vqa, 'annotations_val.json')),
        caption_cider=caption_scores(references, guesses)['CIDEr'])


def run_task(task: str, init: str, checkpoint: str, work_dir: str,
             data_root: str, text_model: Optional[str],
             max_iters: Optional[int], val_samples: Optional[int],
             cfg_options: Sequence[str] = ()) -> Dict[str, float]:
    """One fine-tuning run (``transfer_demo.fine_tune``); the task's metric
    (the mean of its keys) and seconds."""
    spec = VL_TASKS[task]
    return transfer_demo.fine_tune(
        spec['config'], spec['keys'], init, checkpoint, work_dir,
        path_options(spec['config'], data_root, text_model) +
        smoke_options(max_iters, val_samples) + list(cfg_options),
        max_iters)


def main() -> int:
    args = parse_args()
    checkpoint = transfer_demo.pretrained_checkpoint(args.pretrained)
    data_root = osp.abspath(args.data_root)  # as --work-dir: from the cwd
    text_model = osp.abspath(args.text_model) if args.text_model else None
    if not osp.isfile(osp.join(data_root, 'dataset_demo_vl.json')):
        transfer_demo.subprocess.run(
            [sys.executable, osp.join(REPO, DATA_MAKE[0]), '--out',
             data_root], cwd=REPO, check=True)
    work_root = osp.abspath(args.work_dir)
    start = time.time()
    metrics: Dict[str, dict] = {}
    runs: Dict[str, dict] = {}
    transfer_demo.use_jobs(args.jobs)
    for task in args.tasks:
        print(f'== {task}: fine-tuning from pretrained and from scratch',
              flush=True)
        results = transfer_demo.compare(
            lambda init: run_task(task, init, checkpoint,
                                  osp.join(work_root, task, init), data_root,
                                  text_model, args.max_iters,
                                  args.val_samples, args.cfg_options),
            args.jobs)
        for init, result in results.items():
            runs[f'{task}/{init}'] = result
            print(f'   {init:<10} {VL_TASKS[task]["metric"]} = '
                  f'{result["value"]:.4f} ({result["seconds"]:.0f} s)',
                  flush=True)
        metrics[VL_TASKS[task]['metric']] = {
            init: result['value'] for init, result in results.items()}
    chance = chance_levels(data_root, args.val_samples)
    metrics['_chance'] = {VL_TASKS[t]['metric']: chance[VL_TASKS[t]['metric']]
                          for t in args.tasks}
    metrics['_runs'] = dict(pretrained=checkpoint, max_iters=args.max_iters,
                            val_samples=args.val_samples,
                            seconds=round(time.time() - start, 1), **runs)
    return transfer_demo.report(
        metrics, work_root, args.check,
        legend='retrieval_r1: mean of image->text and text->image R@1 (%); '
        'vqa_acc: VQA accuracy (%); caption_cider: CIDEr')


if __name__ == '__main__':
    sys.exit(main())
