"""Write the synthetic shapes as COCO-format detection or ADE20K-format
segmentation data.

Usage:
    python tools/data/make_demo_dense_data.py coco data/demo_coco
        [--label shape|color] [--num-train 256] [--num-val 64] [--size 48]
        [--seed 1] [--mask-format polygon|rle]
    python tools/data/make_demo_dense_data.py ade data/demo_ade
        [--label shape|color] [--num-train 256] [--num-val 64] [--size 48]
        [--seed 1]

Objects are labelled by their shape (4 classes; the configs
configs/mmdet/*demo-shapes* and configs/mmseg/*demo-shapes* read these
folders) or their colour (8 classes; configs/mmdet/*demo-colors*,
configs/mmseg/*demo-colors*).
"""
import argparse

from mmvlp.datasets import make_demo_ade, make_demo_coco
from mmvlp.datasets.demo_data import OBJECT_LABELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('format', choices=['coco', 'ade'])
    parser.add_argument('out', help='output folder')
    parser.add_argument('--num-train', type=int, default=256)
    parser.add_argument('--num-val', type=int, default=64)
    parser.add_argument('--size', type=int, default=48)
    parser.add_argument('--label', default='shape',
                        choices=sorted(OBJECT_LABELS),
                        help='what the object classes are')
    parser.add_argument('--seed', type=int, default=1,
                        help='differs from the pretraining data (seed 0)')
    parser.add_argument('--mask-format', choices=['polygon', 'rle'],
                        default='polygon', help='COCO masks (coco only)')
    args = parser.parse_args()
    if args.format == 'coco':
        written = make_demo_coco(args.out, args.num_train, args.num_val,
                                 args.size, args.seed, args.mask_format,
                                 label=args.label)
    else:
        written = make_demo_ade(args.out, args.num_train, args.num_val,
                                args.size, args.seed, label=args.label)
    print(f'wrote {written} to {args.out}')


if __name__ == '__main__':
    main()
