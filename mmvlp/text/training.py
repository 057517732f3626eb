"""Train a SentencePiece model on a local corpus."""
import json
import os
import os.path as osp
import tempfile
from typing import Iterator, Optional

import sentencepiece as spm
from mmengine.logging import print_log


def iter_corpus(path: str, field: Optional[str] = None,
                keep_empty: bool = False) -> Iterator[str]:
    """Non-empty lines of a text file, or ``field`` of each jsonl line.

    Blank lines are never documents; with ``keep_empty``, a jsonl record
    whose ``field`` is empty is yielded as ``''`` (so that it can be counted).
    The file is read with ``errors='surrogateescape'``: a line that is not
    valid UTF-8 is yielded with lone surrogates in place of its bad bytes
    (``text.encode('utf-8')`` fails on it), so the caller can skip and count
    it instead of losing the whole file.
    """
    with open(path, encoding='utf-8', errors='surrogateescape') as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if field is not None:
                try:
                    line = str(json.loads(line)[field]).strip()
                except (ValueError, KeyError) as error:
                    raise ValueError(f'{path}:{number}: expected a json object '
                                     f'with "{field}" ({error}).') from None
            if line or keep_empty:
                yield line


def train_sentencepiece(corpus: str,
                        out_prefix: str,
                        vocab_size: int = 8000,
                        style: str = 'xlmr',
                        field: Optional[str] = None,
                        model_type: str = 'unigram',
                        character_coverage: float = 1.0) -> str:
    """Train a SentencePiece model usable by :class:`TextTokenizer`.

    ``style='xlmr'`` lays out ``<unk>, <s>, </s>`` as pieces 0-2 (like
    ``beit3.spm``); ``'native'`` also adds ``<pad>`` and ``<mask>``.

    Args:
        corpus (str): Text file (one sentence per line) or jsonl.
        out_prefix (str): Writes ``<out_prefix>.model`` and ``.vocab``.
        vocab_size (int): Pieces in the model.
        style (str): See above.
        field (str, optional): jsonl field holding the text.
        model_type (str): ``unigram`` or ``bpe``.
        character_coverage (float): SentencePiece's character coverage.

    Returns:
        str: Path of the trained ``.model`` file.
    """
    os.makedirs(osp.dirname(osp.abspath(out_prefix)), exist_ok=True)
    with tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False,
                                     encoding='utf-8') as f:
        count = undecodable = 0
        for line in iter_corpus(corpus, field):
            try:
                line.encode('utf-8')
            except UnicodeEncodeError:
                undecodable += 1
                continue
            f.write(line + '\n')
            count += 1
        text_file = f.name
    if undecodable:
        print_log(f'{corpus}: skipped {undecodable} line(s) that are not '
                  'valid UTF-8.', logger='current', level=30)
    if count == 0:
        os.remove(text_file)
        raise ValueError(f'{corpus} holds no text to train on.')
    options = dict(
        input=text_file,
        model_prefix=out_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2)
    if style == 'native':
        options.update(pad_id=3, user_defined_symbols=['<mask>'])
    try:
        spm.SentencePieceTrainer.train(**options)
    finally:
        os.remove(text_file)
    return out_prefix + '.model'
