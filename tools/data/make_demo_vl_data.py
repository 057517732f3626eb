"""Generate the vision-language demo data (retrieval, captioning, VQA and
optionally NLVR2) from the shape scenes of the pretraining demo.

Usage:
    python tools/data/make_demo_vl_data.py [--out data/demo_vl]
        [--num-train 3000] [--num-val 300] [--size 48] [--seed 0]
        [--questions-per-image 2] [--nlvr2 TRAIN VAL]
"""
import argparse

from mmvlp.datasets import make_demo_vl_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/demo_vl')
    parser.add_argument('--num-train', type=int, default=3000)
    parser.add_argument('--num-val', type=int, default=300)
    parser.add_argument('--size', type=int, default=48)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--questions-per-image', type=int, default=2)
    parser.add_argument('--nlvr2', type=int, nargs=2, default=None,
                        metavar=('TRAIN', 'VAL'),
                        help='also write NLVR2-style pairs')
    args = parser.parse_args()
    counts = make_demo_vl_dataset(
        args.out, args.num_train, args.num_val, args.size, args.seed,
        args.questions_per_image,
        tuple(args.nlvr2) if args.nlvr2 else None)
    print(f'wrote {counts} to {args.out}')


if __name__ == '__main__':
    main()
