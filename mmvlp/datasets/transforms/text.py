"""Text transforms."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.transforms import BaseTransform

from mmvlp.registry import TRANSFORMS
from mmvlp.text import TextTokenizer


@TRANSFORMS.register_module()
class TokenizeText(BaseTransform):
    """Tokenize ``results[key]`` into padded ids and a padding mask.

    Adds ``text_ids`` (``(max_length,)`` int64) and ``text_padding_mask``
    (``(max_length,)`` bool, True at padding); pack them with
    ``PackInputs(algorithm_keys=['text_ids', 'text_padding_mask'])`` or
    ``PackFields``. With ``words_key``, also ``text_word_mask``: True at the
    pieces of the words listed in ``results[words_key]`` (e.g. the demo's
    ``content_words``), all False when they cannot be located.

    ``results[key]`` may also hold a list of texts (e.g. the captions of an
    image in a retrieval test set), which gives ``(n, max_length)`` fields,
    or token ids that are already tokenized without ``<s>``/``</s>`` (the
    ``text_segment`` lists of the official BEiT-3 index files), which are
    only wrapped, truncated and padded.

    Args:
        model_file (str): SentencePiece model.
        style (str): ``'xlmr'`` (BEiT-3's ids) or ``'native'``.
        max_length (int): Padded length, ``<s>``/``</s>`` included.
        key (str): Field holding the text.
        words_key (str, optional): Field listing words to locate.
    """

    def __init__(self, model_file: str, style: str = 'xlmr',
                 max_length: int = 64, key: str = 'caption',
                 words_key: Optional[str] = None) -> None:
        self.tokenizer = TextTokenizer(model_file, style, max_length)
        self.key = key
        self.words_key = words_key

    def transform(self, results: dict) -> Optional[dict]:
        value = results[self.key]
        if isinstance(value, str):
            ids, padding = self.tokenizer([value],
                                          pad_to=self.tokenizer.max_length)
            results['text_ids'] = ids[0]
            results['text_padding_mask'] = padding[0]
        elif _is_id_list(value):
            ids, padding = self._pad([self._wrap(value)])
            results['text_ids'] = ids[0]
            results['text_padding_mask'] = padding[0]
            return results  # no words to locate in token ids
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(v, str) or _is_id_list(v) for v in value):
            rows = [self.tokenizer.encode(v) if isinstance(v, str) else
                    self._wrap(v) for v in value]
            ids, padding = self._pad(rows)
            results['text_ids'] = ids
            results['text_padding_mask'] = padding
            return results
        else:
            raise ValueError(
                f'TokenizeText: {self.key!r} must be a text, a list of token '
                f'ids or a non-empty list of texts, got {type(value)}.')
        if self.words_key is not None:
            word_mask = torch.zeros_like(padding[0])
            spans = self.tokenizer.word_positions(
                results[self.key], results.get(self.words_key, []))
            for span in spans or []:
                word_mask[span] = True
            results['text_word_mask'] = word_mask
        return results

    def _wrap(self, ids: Sequence[int]) -> List[int]:
        """``[<s>] + ids + [</s>]``, truncated to ``max_length``."""
        tok = self.tokenizer
        return [tok.bos_id] + [int(i) for i in ids][:tok.max_length - 2] + [
            tok.eos_id]

    def _pad(self, rows: List[List[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        length = self.tokenizer.max_length
        ids = torch.full((len(rows), length), self.tokenizer.pad_id,
                         dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, :len(row)] = torch.tensor(row)
        return ids, ids == self.tokenizer.pad_id

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(model_file='
                f'{self.tokenizer.model_file!r}, style='
                f'{self.tokenizer.style!r}, max_length='
                f'{self.tokenizer.max_length})')


def _is_id_list(value) -> bool:
    """Whether ``value`` is a non-empty list of token ids."""
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


__all__ = ['TokenizeText']
