"""The zero-shot and embedding demo: classify held-out scenes by the colour
of their largest object without training on that task, and check that
nearest neighbours of extracted image embeddings share colour and shape.

Usage:
    python tools/demo/zero_shot_demo.py [--vl-work-dir work_dirs/demo_vl]
        [--pretrained CKPT] [--work-dir work_dirs/demo_zero_shot]
        [--data-root data] [--max-images N] [--k 5 10] [--check]

Needs `make demo` (the pretraining checkpoint) and `make demo-vl` (the
retrieval models fine-tuned from it and from scratch, same budget,
``<vl-work-dir>/retrieval/{pretrained,scratch}``). The held-out scenes are
those of the transfer demo's colour task (``data/demo_cls_colors``,
``cls_val.txt``; generated when missing), drawn with another seed than the
pretraining and retrieval data.

1. Zero-shot: ``tools/test.py configs/zero_shot/beit3-tiny-p8_demo-zero-shot-
   colors.py <retrieval checkpoint>`` (mmpretrain's ``Accuracy``) for both
   retrieval models, with the config's prompt ensemble; the single prompt
   "a photo with a {} shape" through ``ZeroShotClassificationInferencer``.
2. Neighbours: ``tools/extract_features.py`` writes the image embeddings of
   the held-out scenes for the pretraining checkpoint (backbone features:
   ``image_cls``, ``image_mean``) and both retrieval models
   (``image_embed``); the precision@k of their cosine nearest neighbours for
   the colour and the shape of the largest object, next to chance.
3. Pictures: a few scenes with their top-5 colours, and 2-D maps (PCA) of
   the embeddings coloured by colour (``<work-dir>/pictures``).

Writes ``<work-dir>/metrics.json`` and prints the tables; ``--check`` exits
1 unless the pretrained model's zero-shot top-1 beats chance and the
scratch model by ``--margin`` points, and the colour precision@k of the
pretraining's and the pretrained retrieval model's neighbours beats chance
(shape is reported, not checked: the demo models do not learn it).
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import transfer_demo  # noqa: E402  (shared helpers of the fine-tuning demos)
from transfer_demo import REPO  # noqa: E402

ZERO_SHOT_CONFIG = 'configs/zero_shot/beit3-tiny-p8_demo-zero-shot-colors.py'
FEATURE_CONFIG = 'configs/demo/beit3-tiny-p8_demo-vl-retrieval.py'
SINGLE_PROMPT = 'a photo with a {} shape'
INITS = transfer_demo.INITS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--vl-work-dir', default='work_dirs/demo_vl',
                        help='work dir of `make demo-vl` (its retrieval '
                        'checkpoints)')
    parser.add_argument('--pretrained', default=None,
                        help='pretraining checkpoint (default: the one named '
                        'by work_dirs/demo/pretrain/last_checkpoint)')
    parser.add_argument('--work-dir', default='work_dirs/demo_zero_shot')
    parser.add_argument('--data-root', default='data',
                        help='where data/demo_cls_colors is (made there when '
                        'missing)')
    parser.add_argument('--max-images', type=int, default=None,
                        help='use the first N held-out scenes (smoke)')
    parser.add_argument('--k', type=int, nargs='+', default=[5, 10])
    parser.add_argument('--margin', type=float, default=10.,
                        help='points by which --check wants the pretrained '
                        'top-1 above chance and scratch')
    parser.add_argument('--check', action='store_true')
    return parser.parse_args()


def retrieval_checkpoint(vl_work_dir: str, init: str) -> str:
    """The last checkpoint of ``make demo-vl``'s retrieval run."""
    pointer = osp.join(vl_work_dir, 'retrieval', init, 'last_checkpoint')
    if not osp.isfile(pointer):
        raise FileNotFoundError(
            f'{pointer} does not exist: run `make demo-vl` first (it '
            'fine-tunes the retrieval models), or pass --vl-work-dir.')
    with open(pointer) as f:
        return f.read().strip()


def _run(args: List[str], log: str) -> str:
    """A repository tool in a subprocess; its output (also in ``log``)."""
    os.makedirs(osp.dirname(log), exist_ok=True)
    result = subprocess.run([sys.executable] + args, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    with open(log, 'w') as f:
        f.write(result.stdout)
    if result.returncode != 0:
        raise RuntimeError(f'{args[0]} failed ({result.returncode}); the end '
                           f'of {log}:\n{result.stdout[-3000:]}')
    return result.stdout


def zero_shot_accuracy(checkpoint: str, data: str, work_dir: str,
                       max_images: Optional[int]) -> Dict[str, float]:
    """Top-1 / top-5 (%) of ``tools/test.py`` with the zero-shot config."""
    options = [f'test_dataloader.dataset.data_root={data}']
    if max_images:
        options.append(f'test_dataloader.dataset.indices={max_images}')
    out = _run(['tools/test.py', ZERO_SHOT_CONFIG, checkpoint, '--work-dir',
                work_dir, '--cfg-options'] + options,
               osp.join(work_dir, 'test_stdout.log'))
    found = dict(re.findall(r'^accuracy/(top\d): ([\d.]+)$', out, re.M))
    if set(found) != {'top1', 'top5'}:
        raise RuntimeError(f'No accuracy in the output of tools/test.py '
                           f'(see {work_dir}/test_stdout.log).')
    return {k: float(v) for k, v in found.items()}


def held_out(data: str, max_images: Optional[int]) -> List[dict]:
    """The held-out scenes of ``cls_val.txt`` with the colour and shape of
    their largest object (None where that is ambiguous)."""
    from mmvlp.datasets.demo_classification import largest_attribute
    with open(osp.join(data, 'captions_val.jsonl')) as f:
        words = {r['image']: r['content_words']
                 for r in map(json.loads, filter(str.strip, f))}
    with open(osp.join(data, 'cls_val.txt')) as f:
        images = [line.split()[0] for line in f if line.strip()]
    images = images[:max_images] if max_images else images
    return [dict(image=i, color=largest_attribute(words[i], 'color'),
                 shape=largest_attribute(words[i], 'shape')) for i in images]


def extract(checkpoint: str, scenes: List[dict], data: str, out: str,
            embed: bool) -> Dict[str, object]:
    """``tools/extract_features.py`` over the scenes (``image_cls``,
    ``image_mean`` and, with ``embed``, ``image_embed``); the features in
    the order of ``scenes``."""
    import numpy as np
    listing = osp.join(out, 'images.txt')
    os.makedirs(out, exist_ok=True)
    with open(listing, 'w') as f:
        f.write('\n'.join(osp.join(data, s['image']) for s in scenes) + '\n')
    _run(['tools/extract_features.py', FEATURE_CONFIG, checkpoint, '--data',
          listing, '--out', osp.join(out, 'shards'), '--features',
          'image_cls', 'image_mean'] + (['image_embed'] if embed else []),
         osp.join(out, 'extract_stdout.log'))
    sys.path.insert(0, osp.join(REPO, 'tools'))
    from extract_features import read_shards
    with open(osp.join(out, 'shards', 'meta.json')) as f:
        meta = json.load(f)
    arrays = read_shards(osp.join(out, 'shards'), 'npz',
                         meta['features'] + ['ids'])
    if meta['skipped']:
        raise RuntimeError(f'{meta["skipped"]} scenes could not be read: '
                           f'{meta["skipped_by_reason"]}')
    order = {path: i for i, path in enumerate(arrays.pop('ids'))}
    rows = np.array([order[osp.join(data, s['image'])] for s in scenes])
    return {name: value[rows] for name, value in arrays.items()}


def neighbour_precision(features, scenes: List[dict],
                        ks: List[int]) -> Dict[str, float]:
    """Precision@k (%) of colour and shape among the scenes where the
    attribute is defined."""
    from mmvlp.evaluation import knn_precision
    out = {}
    for attribute in ('color', 'shape'):
        rows = [i for i, s in enumerate(scenes) if s[attribute]]
        labels = [scenes[i][attribute] for i in rows]
        for k in ks:
            out[f'{attribute}@{k}'] = 100 * knn_precision(features[rows],
                                                          labels, k)
    return out


def pictures(checkpoint: str, scenes: List[dict], data: str, out: str,
             embeddings) -> None:
    """Eight scenes with their top-5 colours and PCA maps of the
    embeddings coloured by colour."""
    from mmvlp.apis import ZeroShotClassificationInferencer
    from mmvlp.apis.embedding_map import plot_embedding_map
    from mmvlp.datasets.demo_data import COLORS
    classify = ZeroShotClassificationInferencer(
        osp.join(REPO, ZERO_SHOT_CONFIG), checkpoint)
    classify([osp.join(data, s['image']) for s in scenes[:8]], batch_size=8,
             show_dir=osp.join(out, 'zero_shot'))
    colors = {name: tuple(c / 255 for c in rgb)
              for name, rgb in COLORS.items()}
    rows = [i for i, s in enumerate(scenes) if s['color']]
    labels = [scenes[i]['color'] for i in rows]
    for name, features in embeddings.items():
        plot_embedding_map(features[rows], osp.join(out, f'map_{name}.png'),
                           labels, 'pca', title=f'PCA of {name}',
                           colors=colors)


def single_prompt_top1(checkpoint: str, scenes: List[dict],
                       data: str) -> float:
    """Top-1 (%) with the one prompt "a photo with a {} shape"."""
    from mmvlp.apis import ZeroShotClassificationInferencer
    classify = ZeroShotClassificationInferencer(
        osp.join(REPO, ZERO_SHOT_CONFIG), checkpoint,
        templates=[SINGLE_PROMPT])
    results = classify([osp.join(data, s['image']) for s in scenes],
                       batch_size=64)
    return 100 * sum(r['pred_class'] == s['color']
                     for r, s in zip(results, scenes)) / len(scenes)


def main() -> int:
    args = parse_args()
    start = time.time()
    work = osp.abspath(args.work_dir)
    data_root = osp.abspath(args.data_root)
    transfer_demo.make_data('cls', data_root)
    data = osp.join(data_root, transfer_demo.TASKS['cls']['data'])
    pretraining = transfer_demo.pretrained_checkpoint(args.pretrained)
    vl_work = osp.abspath(args.vl_work_dir)
    os.chdir(REPO)  # the configs name the demo's text model from here
    checkpoints = {init: retrieval_checkpoint(vl_work, init)
                   for init in INITS}
    scenes = held_out(data, args.max_images)
    classes = {s['color'] for s in scenes}
    metrics: Dict[str, dict] = {}

    print('== zero-shot colour classification (tools/test.py)', flush=True)
    for init, checkpoint in checkpoints.items():
        accuracy = zero_shot_accuracy(checkpoint, data,
                                      osp.join(work, 'zero_shot', init),
                                      args.max_images)
        metrics.setdefault('zero_shot_top1', {})[init] = accuracy['top1']
        metrics.setdefault('zero_shot_top5', {})[init] = accuracy['top5']
        metrics.setdefault('zero_shot_top1_one_prompt', {})[init] = \
            single_prompt_top1(checkpoint, scenes, data)
    chance_top1 = 100. / 8
    majority = 100. * max(sum(s['color'] == c for s in scenes)
                          for c in classes) / len(scenes)

    print('== nearest neighbours of extracted image embeddings', flush=True)
    import numpy as np
    from mmvlp.evaluation import knn_chance
    features = {}
    pre = extract(pretraining, scenes, data,
                  osp.join(work, 'features', 'pretraining'), embed=False)
    features['pretraining_image_cls'] = pre['image_cls']
    features['pretraining_image_mean'] = pre['image_mean']
    for init, checkpoint in checkpoints.items():
        feats = extract(checkpoint, scenes, data,
                        osp.join(work, 'features', f'retrieval_{init}'),
                        embed=True)
        features[f'retrieval_{init}_image_embed'] = feats['image_embed']
    neighbours = {name: neighbour_precision(np.asarray(value), scenes,
                                            args.k)
                  for name, value in features.items()}
    chance_nn = {}
    for attribute in ('color', 'shape'):
        labels = [s[attribute] for s in scenes if s[attribute]]
        for k in args.k:
            chance_nn[f'{attribute}@{k}'] = 100 * knn_chance(labels)
    pictures(checkpoints['pretrained'], scenes, data,
             osp.join(work, 'pictures'), features)

    metrics['_chance'] = dict(zero_shot_top1=chance_top1,
                              zero_shot_top1_majority=majority,
                              zero_shot_top5=500. / 8,
                              zero_shot_top1_one_prompt=chance_top1)
    metrics['_neighbours'] = dict(precision=neighbours, chance=chance_nn)
    metrics['_runs'] = dict(
        pretraining=pretraining, retrieval=checkpoints, scenes=len(scenes),
        data=data, templates_config=ZERO_SHOT_CONFIG,
        one_prompt=SINGLE_PROMPT, seconds=round(time.time() - start, 1))
    os.makedirs(work, exist_ok=True)
    with open(osp.join(work, 'metrics.json'), 'w') as f:
        json.dump(metrics, f, indent=2)

    print(f'zero-shot accuracy (%) on {len(scenes)} held-out scenes, '
          '8 colours (retrieval fine-tuned from the pretraining / from '
          'scratch)')
    print(f'{"metric":<28}{"pretrained":>12}{"scratch":>10}{"chance":>10}')
    for name in ('zero_shot_top1', 'zero_shot_top5',
                 'zero_shot_top1_one_prompt'):
        row = metrics[name]
        print(f'{name:<28}{row["pretrained"]:>12.2f}{row["scratch"]:>10.2f}'
              f'{metrics["_chance"][name]:>10.2f}')
    print(f'(majority colour: {majority:.2f}%)')
    print('neighbour precision@k (%): share of the k nearest scenes with '
          'the same colour / shape of the largest object')
    names = list(chance_nn)
    print(f'{"embedding":<34}' + ''.join(f'{n:>10}' for n in names))
    for name, row in neighbours.items():
        print(f'{name:<34}' + ''.join(f'{row[n]:>10.2f}' for n in names))
    print(f'{"chance":<34}' + ''.join(f'{chance_nn[n]:>10.2f}'
                                      for n in names))
    print(f'written: {osp.join(work, "metrics.json")} '
          f'({metrics["_runs"]["seconds"]:.0f} s)')

    failed = []
    top1 = metrics['zero_shot_top1']
    if top1['pretrained'] < chance_top1 + args.margin:
        failed.append('zero-shot top-1 not above chance by the margin')
    if top1['pretrained'] < top1['scratch'] + args.margin:
        failed.append('zero-shot top-1 not above scratch by the margin')
    # Colour only: the demo models do not learn the shape of the largest
    # object (its neighbours are at chance; reported, not checked).
    for name in ('retrieval_pretrained_image_embed',
                 'pretraining_image_cls'):
        for key, value in neighbours[name].items():
            if key.startswith('color') and value <= chance_nn[key]:
                failed.append(f'{name} {key} not above chance')
    if failed:
        print('not shown: ' + '; '.join(failed))
        return 1 if args.check else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
