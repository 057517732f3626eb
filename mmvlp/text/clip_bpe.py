"""OpenAI CLIP's byte-level BPE tokenizer (49408 ids), the text tokenizer
of QLIP's released models.

The tokenizer and its merges file are the ones mmsegmentation ships
(``mmseg.utils.tokenizer``, with ``bpe_simple_vocab_16e6.txt.gz``), a kept
dependency of mmvlp; this module only adds the batch interface of mmvlp's
text tokenizers.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch

from mmvlp.registry import MODELS

CLIP_VOCAB_SIZE = 49408
CLIP_BOS_ID = 49406
CLIP_EOS_ID = 49407


@MODELS.register_module()
class CLIPBPETokenizer:
    """Texts to CLIP BPE ids: ``<start_of_text>`` (49406), the lower-cased,
    ftfy-cleaned text's BPE pieces, ``<end_of_text>`` (49407), zero padding;
    longer texts are cut to ``context_length`` with the end token kept last
    (as ``clip.tokenize`` / open_clip).

    Registered in ``MODELS``: configs name it
    ``tokenizer=dict(type='CLIPBPETokenizer')`` (e.g. for the zero-shot
    classifier with a converted QLIP model).

    Args:
        context_length (int): Sequence length (77 for CLIP and QLIP).
    """

    def __init__(self, context_length: int = 77) -> None:
        from mmseg.utils import tokenizer as mmseg_tokenizer
        if context_length < 2:
            raise ValueError(f'context_length must be at least 2, got '
                             f'{context_length}.')
        self._module = mmseg_tokenizer
        self.bpe = mmseg_tokenizer._tokenizer
        self.context_length = context_length
        self.vocab_size = self.bpe.vocab_size
        self.bos_id = self.bpe.encoder['<start_of_text>']
        self.eos_id = self.bpe.encoder['<end_of_text>']
        self.pad_id = 0
        if (self.vocab_size, self.bos_id, self.eos_id) != (
                CLIP_VOCAB_SIZE, CLIP_BOS_ID, CLIP_EOS_ID):
            raise RuntimeError(
                'mmseg.utils.tokenizer does not hold the CLIP vocabulary '
                f'(size {self.vocab_size}, bos {self.bos_id}, eos '
                f'{self.eos_id}); reinstall mmsegmentation==1.2.2.')

    def encode(self, text: str) -> List[int]:
        """Ids of one text with the start and end tokens, unpadded."""
        ids = [self.bos_id] + self.bpe.encode(text) + [self.eos_id]
        if len(ids) > self.context_length:
            ids = ids[:self.context_length - 1] + [self.eos_id]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ids (special tokens and padding dropped)."""
        keep = [int(i) for i in ids
                if int(i) not in (self.bos_id, self.eos_id, self.pad_id)]
        return self.bpe.decode(keep).strip()

    def __call__(self,
                 texts: Union[str, Sequence[str]],
                 pad_to: Optional[int] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Batch of texts to ``(ids, padding_mask)``, both ``(B, L)`` with
        ``L = pad_to or context_length``; the mask is True after the end
        token."""
        if isinstance(texts, str):
            texts = [texts]
        length = pad_to or self.context_length
        if length > self.context_length:
            raise ValueError(f'pad_to={length} exceeds context_length='
                             f'{self.context_length}.')
        ids = torch.full((len(texts), length), self.pad_id, dtype=torch.long)
        padding = torch.ones(len(texts), length, dtype=torch.bool)
        for row, text in enumerate(texts):
            tokens = self.encode(text)
            if len(tokens) > length:
                tokens = tokens[:length - 1] + [self.eos_id]
            ids[row, :len(tokens)] = torch.tensor(tokens)
            padding[row, :len(tokens)] = False
        return ids, padding
