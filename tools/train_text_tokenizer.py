"""Train a SentencePiece text tokenizer on a local corpus.

Usage:
    python tools/train_text_tokenizer.py CORPUS OUT_PREFIX [--vocab-size 8000]
        [--field caption] [--style xlmr|native] [--model-type unigram|bpe]

CORPUS is a text file (one sentence per line) or a jsonl file (give the text
field with --field). ``--style xlmr`` (default) gives a model that mmvlp reads
with BEiT-3's XLM-R special ids, like ``beit3.spm``.
"""
import argparse

from mmvlp.text import TextTokenizer, train_sentencepiece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('corpus')
    parser.add_argument('out_prefix')
    parser.add_argument('--vocab-size', type=int, default=8000)
    parser.add_argument('--field', default=None)
    parser.add_argument('--style', choices=('xlmr', 'native'), default='xlmr')
    parser.add_argument('--model-type', choices=('unigram', 'bpe'),
                        default='unigram')
    args = parser.parse_args()
    path = train_sentencepiece(args.corpus, args.out_prefix, args.vocab_size,
                               args.style, args.field, args.model_type)
    tokenizer = TextTokenizer(path, style=args.style)
    print(f'wrote {path}: {tokenizer.vocab_size} ids ({args.style} style; '
          f'mask id {tokenizer.mask_id}, pad id {tokenizer.pad_id})')


if __name__ == '__main__':
    main()
