"""Text tokenization with SentencePiece (no ``transformers`` needed)."""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import sentencepiece as spm
import torch

STYLES = ('xlmr', 'native')


class TextTokenizer:
    """A SentencePiece model with BEiT-3's (XLM-R) or its own special ids.

    ``style='xlmr'`` reproduces how BEiT-3 reads ``beit3.spm`` through the
    XLM-R convention: ``<s>=0``, ``<pad>=1``, ``</s>=2``, ``<unk>=3``, every
    other piece at its SentencePiece id + 1, and the mask token right after
    the vocabulary (64001 for ``beit3.spm``). The model must have
    ``<unk>, <s>, </s>`` as its pieces 0, 1, 2 (SentencePiece's defaults and
    ``beit3.spm``'s layout).

    ``style='native'`` uses the model's own ids; it must define ``pad`` (and
    ``bos``/``eos``) ids and a ``<mask>`` piece (``tools/train_text_tokenizer.py
    --style native`` trains such a model).

    Args:
        model_file (str): The ``.spm``/``.model`` file.
        style (str): ``'xlmr'`` or ``'native'``.
        max_length (int): Longest sequence, ``<s>`` and ``</s>`` included.
    """

    def __init__(self, model_file: str, style: str = 'xlmr',
                 max_length: int = 64) -> None:
        if style not in STYLES:
            raise ValueError(f'style must be one of {STYLES}, got {style!r}.')
        if not osp.isfile(model_file):
            raise FileNotFoundError(
                f'SentencePiece model {model_file} not found. Give BEiT-3\'s '
                'beit3.spm or train one with tools/train_text_tokenizer.py.')
        if max_length < 3:
            raise ValueError(f'max_length must be at least 3, got '
                             f'{max_length}.')
        self.model_file = model_file
        self.style = style
        self.max_length = max_length
        self.sp = spm.SentencePieceProcessor(model_file=model_file)
        size = self.sp.get_piece_size()
        if style == 'xlmr':
            pieces = [self.sp.id_to_piece(i) for i in range(min(3, size))]
            if pieces != ['<unk>', '<s>', '</s>']:
                raise ValueError(
                    f'{model_file} starts with {pieces}; the xlmr style needs '
                    "['<unk>', '<s>', '</s>'] as pieces 0-2 (or use "
                    "style='native').")
            self.bos_id, self.pad_id, self.eos_id, self.unk_id = 0, 1, 2, 3
            self.mask_id = size + 1
            self.vocab_size = size + 2
        else:
            self.bos_id, self.pad_id = self.sp.bos_id(), self.sp.pad_id()
            self.eos_id, self.unk_id = self.sp.eos_id(), self.sp.unk_id()
            self.mask_id = self.sp.piece_to_id('<mask>')
            if min(self.bos_id, self.pad_id, self.eos_id) < 0 or \
                    self.mask_id == self.unk_id:
                raise ValueError(
                    f'{model_file} lacks bos/eos/pad ids or a <mask> piece '
                    "needed by style='native'; train it with tools/"
                    'train_text_tokenizer.py --style native.')
            self.vocab_size = size

    def word_positions(self, text: str,
                       words: Sequence[str]) -> Optional[List[List[int]]]:
        """Token positions (in :meth:`encode`'s output) of ``words``.

        ``words`` are matched in order against the whitespace-separated
        words of ``text``; each gets the positions of its pieces.

        Returns:
            list | None: One list of positions per word, or None when a word
            is missing, pieces cross word boundaries or the text would be
            truncated.
        """
        pieces, spans, remaining = [], [], list(words)
        for word in text.split():
            ids = self.piece_ids(word)
            if remaining and word == remaining[0]:
                start = 1 + len(pieces)  # after <s>
                spans.append(list(range(start, start + len(ids))))
                remaining.pop(0)
            pieces += ids
        if remaining or pieces != self.piece_ids(text) or \
                len(pieces) + 2 > self.max_length:
            return None
        return spans

    def piece_ids(self, text: str) -> List[int]:
        """Ids of the pieces of ``text`` (no ``<s>``/``</s>``, no limit)."""
        ids = self.sp.encode(text, out_type=int)
        if self.style == 'xlmr':
            ids = [self.unk_id if i == self.sp.unk_id() else i + 1
                   for i in ids]
        return ids

    def encode(self, text: str) -> List[int]:
        """``[<s>] + pieces + [</s>]``, truncated to ``max_length``."""
        ids = self.piece_ids(text)[:self.max_length - 2]
        return [self.bos_id] + ids + [self.eos_id]

    def __call__(self, texts: Sequence[str],
                 pad_to: Optional[int] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode and pad a batch.

        Args:
            texts (Sequence[str]): The texts.
            pad_to (int, optional): Pad every row to this length (default:
                the longest row).

        Returns:
            tuple: ``ids`` ``(B, L)`` int64 and ``padding_mask`` ``(B, L)``
            bool (True at padding).
        """
        rows = [self.encode(t) for t in texts]
        length = pad_to or max(len(r) for r in rows)
        if length > self.max_length or any(len(r) > length for r in rows):
            raise ValueError(f'pad_to={length} must be within [longest row, '
                             f'max_length={self.max_length}].')
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, :len(row)] = torch.tensor(row)
        return ids, ids == self.pad_id

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids. Special tokens (``<s>``, ``<pad>``, ``</s>``,
        ``<unk>``, the mask) and ids beyond the vocabulary are dropped, as
        the official evaluation decodes (``skip_special_tokens=True``)."""
        special = {self.bos_id, self.pad_id, self.eos_id, self.mask_id,
                   self.unk_id}
        pieces = [int(i) for i in ids
                  if int(i) not in special and 0 <= int(i) < self.vocab_size]
        if self.style == 'xlmr':
            pieces = [i - 1 for i in pieces]
        return self.sp.decode(pieces)
