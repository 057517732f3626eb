"""Write the synthetic shapes as COCO-format detection or ADE20K-format
segmentation data.

Usage:
    python tools/data/make_demo_dense_data.py coco data/demo_coco
        [--num-train 256] [--num-val 64] [--size 48] [--seed 0]
        [--mask-format polygon|rle]
    python tools/data/make_demo_dense_data.py ade data/demo_ade
        [--num-train 256] [--num-val 64] [--size 48] [--seed 0]

The configs in configs/mmdet/*demo-shapes* and configs/mmseg/*demo-shapes*
read these folders.
"""
import argparse

from mmvlp.datasets import make_demo_ade, make_demo_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('format', choices=['coco', 'ade'])
    parser.add_argument('out', help='output folder')
    parser.add_argument('--num-train', type=int, default=256)
    parser.add_argument('--num-val', type=int, default=64)
    parser.add_argument('--size', type=int, default=48)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--mask-format', choices=['polygon', 'rle'],
                        default='polygon', help='COCO masks (coco only)')
    args = parser.parse_args()
    if args.format == 'coco':
        written = make_demo_coco(args.out, args.num_train, args.num_val,
                                 args.size, args.seed, args.mask_format)
    else:
        written = make_demo_ade(args.out, args.num_train, args.num_val,
                                args.size, args.seed)
    print(f'wrote {written} to {args.out}')


if __name__ == '__main__':
    main()
