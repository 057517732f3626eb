"""Pictures of what the models learned."""
from .masked_modeling import draw_what_it_learned, token_colours, word_spans

__all__ = ['draw_what_it_learned', 'token_colours', 'word_spans']
