"""Generate the synthetic image-caption demo dataset.

Usage:
    python tools/data/make_demo_data.py [--out data/demo] [--num-train 512]
        [--num-val 128] [--size 64] [--seed 0] [--shape-scale 1]
"""
import argparse

from mmvlp.datasets import make_demo_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/demo')
    parser.add_argument('--num-train', type=int, default=512)
    parser.add_argument('--num-val', type=int, default=128)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--shape-scale', type=float, default=1.,
                        help='factor on the shapes\' sides')
    args = parser.parse_args()
    written = make_demo_dataset(args.out, args.num_train, args.num_val,
                                args.size, args.seed, args.shape_scale)
    print(f'wrote {written} images with captions to {args.out}')


if __name__ == '__main__':
    main()
