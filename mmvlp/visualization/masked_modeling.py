"""A picture of what a masked-modeling model learned on the demo scenes.

Per held-out scene: the image with its masked patches, the visual tokens the
model predicts there next to the true ones (each drawn as the colour it
stands for), and the caption with masked words filled in once with the
scene's own image and once with another scene's image.
"""
from collections import Counter
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = ['token_colours', 'word_spans', 'draw_what_it_learned']

FOREGROUND_THRESHOLD = 30  # as tools/analysis_tools/eval_demo_pretrain.py
GOOD, BAD, MASKED = '#1a7f37', '#cf222e', '#555555'


def _patch_colour(block: np.ndarray, background: Sequence[int]) -> tuple:
    """The most frequent colour of a patch's foreground pixels, else the
    background colour."""
    pixels = block.reshape(-1, 3).astype(int)
    away = np.abs(pixels - np.asarray(background)).max(-1) > \
        FOREGROUND_THRESHOLD
    if not away.any():
        return tuple(int(c) for c in background)
    return Counter(map(tuple, pixels[away].tolist())).most_common(1)[0][0]


def token_colours(images: Sequence[np.ndarray], tokens: np.ndarray,
                  backgrounds: Sequence[Sequence[int]], patch: int,
                  vocab_size: int) -> np.ndarray:
    """The colour each visual token stands for on the demo scenes.

    A patch's colour is that of its foreground pixels (the shape colour the
    demo tokenizer's codes name), or the background's; a token's colour is
    the most frequent colour of the patches it was given to.

    Args:
        images (Sequence[np.ndarray]): ``(H, W, 3)`` uint8 RGB images.
        tokens (np.ndarray): ``(N, h * w)`` token ids of the images.
        backgrounds (Sequence): RGB background colour per image.
        patch (int): Patch side in pixels.
        vocab_size (int): Number of token ids.

    Returns:
        np.ndarray: ``(vocab_size, 3)`` uint8; mid grey for unused ids.
    """
    votes = [Counter() for _ in range(vocab_size)]
    for image, row, background in zip(images, tokens, backgrounds):
        height, width = image.shape[0] // patch, image.shape[1] // patch
        blocks = image[:height * patch, :width * patch].reshape(
            height, patch, width, patch, 3).transpose(0, 2, 1, 3, 4)
        for index, token in enumerate(row):
            votes[int(token)][_patch_colour(
                blocks[index // width, index % width], background)] += 1
    return np.asarray([v.most_common(1)[0][0] if v else (128, 128, 128)
                       for v in votes], dtype=np.uint8)


def word_spans(tokenizer, caption: str) -> List[List[int]]:
    """Token positions (after ``<s>``) of each whitespace word of
    ``caption``."""
    spans, start = [], 1
    for word in caption.split():
        count = len(tokenizer.piece_ids(word))
        spans.append(list(range(start, start + count)))
        start += count
    return spans


def _filled_words(tokenizer, caption: str, mask: np.ndarray,
                  pred: np.ndarray) -> List[Tuple[str, str]]:
    """``(text, colour)`` per word: masked words as predicted (green when
    right, red when wrong), the others as written."""
    words = []
    for word, span in zip(caption.split(), word_spans(tokenizer, caption)):
        if span and span[-1] < len(mask) and mask[span].all():
            guess = tokenizer.decode([int(i) for i in pred[span]]).strip()
            words.append((guess or '?', GOOD if guess == word else BAD))
        else:
            words.append((word, 'black'))
    return words


def _tokens_image(pixels: np.ndarray, tokens: np.ndarray, mask: np.ndarray,
                  colours: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """The image faded, with masked patches filled by their tokens'
    colours."""
    out = (pixels.astype(float) * 0.35 + 255 * 0.65).astype(np.uint8)
    height, width = grid
    patch = pixels.shape[0] // height
    for index in np.flatnonzero(mask):
        y, x = divmod(int(index), width)
        out[y * patch:(y + 1) * patch, x * patch:(x + 1) * patch] = \
            colours[int(tokens[index])]
    return out


def _outline(ax, mask: np.ndarray, grid: Sequence[int], patch: int,
             wrong=None) -> None:
    from matplotlib.patches import Rectangle
    width = grid[1]
    for index in np.flatnonzero(mask):
        y, x = divmod(int(index), width)
        bad = wrong is not None and wrong[index]
        ax.add_patch(Rectangle((x * patch - .5, y * patch - .5), patch, patch,
                               fill=False, lw=1.6 if bad else .6,
                               ec=BAD if bad else 'white'))


def _write_words(ax, y: float, label: str, words: List[Tuple[str, str]],
                 fontsize: float, line_step: float = 0.075) -> float:
    """Write ``label`` then the coloured words in a monospace font, wrapping
    lines; returns the next free y (axes coordinates)."""
    ax.text(0, y, label, fontsize=fontsize - 1, style='italic',
            color=MASKED, transform=ax.transAxes, va='baseline')
    # One character's width in axes coordinates (monospace: all equal).
    points = ax.get_window_extent().width * 72 / ax.figure.dpi
    char = 0.6 * fontsize / points
    per_line = int(0.92 / char)
    y -= line_step
    line = 0
    for text, colour in words:
        if line and line + len(text) + 1 > per_line:
            y -= line_step
            line = 0
        ax.text(0.03 + line * char, y, text, transform=ax.transAxes,
                fontsize=fontsize, color=colour, va='baseline',
                family='monospace',
                weight='bold' if colour != 'black' else 'normal')
        line += len(text) + 1
    return y - line_step * 1.25


def draw_what_it_learned(path: str, records: List[dict],
                         arrays: Dict[str, np.ndarray], tokenizer,
                         colours: np.ndarray, grid: Sequence[int],
                         num_scenes: int = 4, batch_size: int = 100,
                         dpi: int = 72) -> str:
    """Draw held-out scenes and the model's fill-ins to ``path`` (PNG).

    Args:
        path (str): Output file.
        records (list[dict]): The held-out records (``pixels``, ``caption``),
            in the order the arrays were predicted.
        arrays (dict): Masks, tokens and predictions from
            ``eval_demo_pretrain.predict`` (``targets``, ``vision_mask``,
            ``mim``, ``text_ids``, ``content_mask``, ``pair_mlm_matched``,
            ``pair_mlm_shuffled``).
        tokenizer: The ``TextTokenizer`` of the captions.
        colours (np.ndarray): ``(vocab, 3)`` colour per visual token
            (:func:`token_colours`).
        grid (Sequence[int]): Patch grid ``(h, w)``.
        num_scenes (int): Scenes to draw (from the second on: the
            "another scene" of scene ``i`` is scene ``i - 1``, as in the
            evaluation's shuffled pairs). Defaults to 4.
        batch_size (int): The evaluation's batch size (shuffled pairs roll
            within a batch). Defaults to 100.
        dpi (int): Resolution. Defaults to 72.

    Returns:
        str: ``path``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    patch = records[0]['pixels'].shape[0] // grid[0]
    scenes = [i for i in range(1, len(records))
              if arrays['content_mask'][i].any()][:num_scenes]
    fig, axes = plt.subplots(
        len(scenes), 5, figsize=(14, 2.4 * len(scenes)),
        gridspec_kw=dict(width_ratios=[1, 1, 1, 1, 3.8]), squeeze=False)
    titles = ('held-out scene, masked', 'model: tokens at the mask',
              'true tokens', 'another scene',
              'caption, masked words filled in')
    for row, index in enumerate(scenes):
        record = records[index]
        start = index - index % batch_size
        other = start + (index - start - 1) % min(
            batch_size, len(records) - start)
        mask = arrays['vision_mask'][index].astype(bool)
        pred, true = arrays['mim'][index], arrays['targets'][index]
        hidden_pixels = np.repeat(np.repeat(mask.reshape(grid), patch, 0),
                                  patch, 1)
        masked_image = np.where(hidden_pixels[..., None], 200,
                                record['pixels']).astype(np.uint8)
        panels = (masked_image,
                  _tokens_image(record['pixels'], pred, mask, colours, grid),
                  _tokens_image(record['pixels'], true, mask, colours, grid),
                  records[other]['pixels'])
        for col, image in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(image, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if col < 3:
                _outline(ax, mask, grid, patch,
                         wrong=(pred != true) & mask if col == 1 else None)
        axes[row, 4].axis('off')
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=9, loc='left' if col == 4
                               else 'center')
    mim = (arrays['mim'] == arrays['targets'])[
        arrays['vision_mask'].astype(bool)].mean()
    fig.suptitle(f'What the demo BEiT-3 learned. Held-out scenes; masked '
                 f'patches outlined, wrong token predictions in red '
                 f'({mim:.0%} of all masked tokens right).\nMasked caption '
                 'words filled in by the model: green when right, red when '
                 'wrong.', fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    # The text after the layout: word positions depend on the axes' width.
    for row, index in enumerate(scenes):
        ax, caption = axes[row, 4], records[index]['caption']
        content = arrays['content_mask'][index].astype(bool)
        hidden = [(word, 'black') if not (span and content[span].all()) else
                  ('_' * len(word), MASKED) for word, span in zip(
                      caption.split(), word_spans(tokenizer, caption))]
        y = _write_words(ax, 0.95, 'masked caption', hidden, 8.5)
        y = _write_words(ax, y, 'filled in with its own image',
                         _filled_words(tokenizer, caption, content,
                                       arrays['pair_mlm_matched'][index]),
                         8.5)
        _write_words(ax, y, "filled in with another scene's image (4th "
                     'column)', _filled_words(
                         tokenizer, caption, content,
                         arrays['pair_mlm_shuffled'][index]), 8.5)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
