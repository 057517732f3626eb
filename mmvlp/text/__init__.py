"""Text tokenization (SentencePiece; CLIP BPE for QLIP)."""
from .clip_bpe import CLIPBPETokenizer
from .tokenizer import STYLES, TextTokenizer
from .training import train_sentencepiece

__all__ = ['STYLES', 'TextTokenizer', 'train_sentencepiece',
           'CLIPBPETokenizer']
