"""Text transforms."""
from typing import Optional

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
        ids, padding = self.tokenizer([results[self.key]],
                                      pad_to=self.tokenizer.max_length)
        results['text_ids'] = ids[0]
        results['text_padding_mask'] = padding[0]
        if self.words_key is not None:
            word_mask = torch.zeros_like(padding[0])
            spans = self.tokenizer.word_positions(
                results[self.key], results.get(self.words_key, []))
            for span in spans or []:
                word_mask[span] = True
            results['text_word_mask'] = word_mask
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(model_file='
                f'{self.tokenizer.model_file!r}, style='
                f'{self.tokenizer.style!r}, max_length='
                f'{self.tokenizer.max_length})')


__all__ = ['TokenizeText']
