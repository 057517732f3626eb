"""Text tokenization (SentencePiece)."""
from .tokenizer import STYLES, TextTokenizer
from .training import train_sentencepiece

__all__ = ['STYLES', 'TextTokenizer', 'train_sentencepiece']
