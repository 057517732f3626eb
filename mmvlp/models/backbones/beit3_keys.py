"""Names of ``BEiT3`` parameters: which belong to the text parts.

A leaf module (it imports nothing of mmvlp's), so both the backbone's
checkpoint loader and the official-file converters
(:mod:`mmvlp.models.converters`) can use it without importing each other.
"""

__all__ = ['TEXT_ONLY_DESCRIPTION', 'is_text_only_key']

#: What a vision-only ``BEiT3`` drops, for messages.
TEXT_ONLY_DESCRIPTION = ('text_embed, pos_embed_text and the text / '
                         'vision-language experts (*.text, *.vl)')


def is_text_only_key(name: str) -> bool:
    """Whether a ``BEiT3`` parameter name belongs to text-only parts.

    Args:
        name (str): A name relative to the backbone, e.g.
            ``'layers.0.ffn.text.fc1.weight'``.

    Returns:
        bool: True for the text table and positions and for the text and
        vision-language experts.
    """
    parts = name.split('.')
    return (parts[0] in ('text_embed', 'pos_embed_text') or 'text' in parts
            or 'vl' in parts)
