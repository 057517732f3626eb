"""Building blocks shared by every mmvlp model (one implementation each)."""
from .arch import resolve_arch
from .attention import MultiwayAttention, window_sdpa
from .embed import PatchEmbed, grid_of, resize_pos_embed
from .ffn import SubLNFFN
from .init import init_transformer_weights
from .multiway import MultiwayExperts, multiway_or_shared, route
from .rope import apply_rope, rope_2d_tables
from .transformer import MultiwayTransformerLayer

__all__ = [
    'MultiwayAttention', 'window_sdpa', 'PatchEmbed', 'grid_of', 'resize_pos_embed',
    'SubLNFFN', 'MultiwayExperts', 'multiway_or_shared', 'route',
    'MultiwayTransformerLayer', 'resolve_arch', 'init_transformer_weights',
    'apply_rope', 'rope_2d_tables'
]
