"""Text transforms."""
from typing import Optional

from mmcv.transforms import BaseTransform

from mmvlp.registry import TRANSFORMS
from mmvlp.text import TextTokenizer


@TRANSFORMS.register_module()
class TokenizeText(BaseTransform):
    """Tokenize ``results[key]`` into padded ids and a padding mask.

    Adds ``text_ids`` (``(max_length,)`` int64) and ``text_padding_mask``
    (``(max_length,)`` bool, True at padding); pack them with
    ``PackInputs(algorithm_keys=['text_ids', 'text_padding_mask'])``.

    Args:
        model_file (str): SentencePiece model.
        style (str): ``'xlmr'`` (BEiT-3's ids) or ``'native'``.
        max_length (int): Padded length, ``<s>``/``</s>`` included.
        key (str): Field holding the text.
    """

    def __init__(self, model_file: str, style: str = 'xlmr',
                 max_length: int = 64, key: str = 'caption') -> None:
        self.tokenizer = TextTokenizer(model_file, style, max_length)
        self.key = key

    def transform(self, results: dict) -> Optional[dict]:
        ids, padding = self.tokenizer([results[self.key]],
                                      pad_to=self.tokenizer.max_length)
        results['text_ids'] = ids[0]
        results['text_padding_mask'] = padding[0]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(model_file='
                f'{self.tokenizer.model_file!r}, style='
                f'{self.tokenizer.style!r}, max_length='
                f'{self.tokenizer.max_length})')


__all__ = ['TokenizeText']
