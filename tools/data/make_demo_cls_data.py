"""Generate a classification dataset from the synthetic demo scenes.

The label of a scene is the shape (default) or the colour of its largest
object; scenes where that is ambiguous are left out. Writes the scenes
(unless --labels-only) and ``cls_train.txt`` / ``cls_val.txt`` in
mmpretrain's CustomDataset format.

Usage:
    python tools/data/make_demo_cls_data.py [--out data/demo_cls]
        [--label shape|color] [--num-train 1200] [--num-val 300]
        [--size 48] [--seed 1] [--labels-only]
"""
import argparse

from mmvlp.datasets import make_demo_dataset
from mmvlp.datasets.demo_classification import write_demo_classification
from mmvlp.datasets.demo_data import OBJECT_LABELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/demo_cls')
    parser.add_argument('--label', default='shape',
                        choices=sorted(OBJECT_LABELS),
                        help='attribute of the largest object to classify')
    parser.add_argument('--num-train', type=int, default=1200)
    parser.add_argument('--num-val', type=int, default=300)
    parser.add_argument('--size', type=int, default=48)
    parser.add_argument('--seed', type=int, default=1,
                        help='differs from the pretraining data (seed 0)')
    parser.add_argument('--labels-only', action='store_true',
                        help='only label the scenes already in --out')
    args = parser.parse_args()
    if not args.labels_only:
        make_demo_dataset(args.out, args.num_train, args.num_val, args.size,
                          args.seed)
    for split, info in write_demo_classification(args.out,
                                                 label=args.label).items():
        print(f'{split}: {info["kept"]} images ({info["skipped"]} ambiguous '
              f'left out), per class {info["classes"]} -> '
              f'{args.out}/cls_{split}.txt')


if __name__ == '__main__':
    main()
