"""Build the VQA answer vocabulary (``answer2label.txt``) from VQAv2
annotation files: the normalised ``multiple_choice_answer`` s that occur at
least ``--min-count`` times (9 on train + val gives the official 3129).

Usage:
    python tools/data/build_vqa_answer_vocab.py \
        data/vqa/v2_mscoco_train2014_annotations.json \
        data/vqa/v2_mscoco_val2014_annotations.json \
        --out data/vqa/answer2label.txt [--min-count 9] [--max-answers N]
"""
import argparse
import json

from mmvlp.datasets.vl_formats import build_answer_vocab, write_answer_vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('annotations', nargs='+',
                        help='VQAv2 annotation JSON files')
    parser.add_argument('--out', required=True)
    parser.add_argument('--min-count', type=int, default=9)
    parser.add_argument('--max-answers', type=int, default=None)
    args = parser.parse_args()
    annotations = []
    for path in args.annotations:
        with open(path) as f:
            annotations += json.load(f)['annotations']
    answers = build_answer_vocab(annotations, args.min_count,
                                 args.max_answers)
    write_answer_vocab(answers, args.out)
    print(f'{len(answers)} answers of {len(annotations)} questions -> '
          f'{args.out}')


if __name__ == '__main__':
    main()
