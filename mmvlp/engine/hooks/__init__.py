"""Training hooks."""
from .codebook_health import CodebookHealthHook, find_quantizers

__all__ = ['CodebookHealthHook', 'find_quantizers']
