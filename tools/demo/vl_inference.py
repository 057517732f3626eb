"""Run a fine-tuned BEiT-3 vision-language model on your images and texts and
save a picture of the result (matplotlib, mmpretrain's visualizer).

Usage:
    # text -> image: the top images of a folder for a text
    python tools/demo/vl_inference.py t2i CONFIG CKPT --images DIR \
        --text "a small red circle at the top left" [--topk 5]
    # image -> text: the best texts (one per line of a file) for an image
    python tools/demo/vl_inference.py i2t CONFIG CKPT IMAGE --texts FILE
    # visual question answering
    python tools/demo/vl_inference.py vqa CONFIG CKPT IMAGE \
        --question "what color is the circle"
    # captioning
    python tools/demo/vl_inference.py caption CONFIG CKPT IMAGE [IMAGE ...]

Pictures go to ``--out-dir`` (default ``work_dirs/vl_inference/<task>``);
the results are printed as JSON.
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmvlp.apis import (ImageCaptionInferencer, ImageToTextRetrievalInferencer,
                        TextToImageRetrievalInferencer,
                        VisualQuestionAnsweringInferencer)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    tasks = parser.add_subparsers(dest='task', required=True)

    def common(name: str, help: str) -> argparse.ArgumentParser:
        sub = tasks.add_parser(name, help=help)
        sub.add_argument('config')
        sub.add_argument('checkpoint')
        sub.add_argument('--out-dir', default=None)
        sub.add_argument('--device', default='cpu')
        return sub

    t2i = common('t2i', 'text -> image retrieval over a folder of images')
    t2i.add_argument('--images', required=True, help='folder of images')
    t2i.add_argument('--text', required=True, nargs='+')
    t2i.add_argument('--topk', type=int, default=5)
    i2t = common('i2t', 'image -> text retrieval over a list of texts')
    i2t.add_argument('image', nargs='+')
    i2t.add_argument('--texts', required=True,
                     help='text file, one candidate per line')
    i2t.add_argument('--topk', type=int, default=5)
    vqa = common('vqa', 'visual question answering')
    vqa.add_argument('image')
    vqa.add_argument('--question', required=True)
    caption = common('caption', 'image captioning')
    caption.add_argument('image', nargs='+')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = args.out_dir or osp.join('work_dirs', 'vl_inference', args.task)
    os.makedirs(out_dir, exist_ok=True)
    if args.task == 't2i':
        inferencer = TextToImageRetrievalInferencer(
            args.config, args.checkpoint, prototype=args.images,
            device=args.device)
        results = inferencer(args.text, topk=args.topk, show_dir=out_dir)
    elif args.task == 'i2t':
        inferencer = ImageToTextRetrievalInferencer(
            args.config, args.checkpoint, prototype=args.texts,
            device=args.device)
        results = inferencer(args.image, topk=args.topk, show_dir=out_dir)
    elif args.task == 'vqa':
        inferencer = VisualQuestionAnsweringInferencer(
            args.config, args.checkpoint, device=args.device)
        results = inferencer(args.image, args.question, show_dir=out_dir,
                             resize=384)
    else:
        inferencer = ImageCaptionInferencer(args.config, args.checkpoint,
                                            device=args.device)
        results = inferencer(args.image, show_dir=out_dir, resize=384)
    print(json.dumps(results, indent=2))
    print(f'pictures saved in {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
