"""Bad-data accounting: skipped samples, counted by reason.

A sample that cannot be used (an unreadable image, an empty caption, a broken
shard record) is skipped, replaced by another one and *counted*, never
silently. Dataloader workers are separate processes, so the counts travel
with the data: every process keeps a :class:`SkipCounter` with the skips not
reported yet, and the next sample that the process delivers carries them as
``skipped`` (an int64 vector indexed like :data:`SKIP_REASONS`, added by
:class:`~mmvlp.datasets.transforms.PackFields` or by the stream datasets).
Batches collate these vectors and :class:`~mmvlp.engine.DataSkipHook` sums
them per source across the step and across ranks.

Skips found while an annotation list is read (e.g. an empty caption in a
jsonl list) are known before training; datasets report them as
``load_skips`` (``{reason: count}``), which the hook reads once.
"""
import os
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.logging import print_log

SKIP_REASONS = (
    'missing_file',  # the image file does not exist
    'unreadable_file',  # any other error while reading the file
    'empty_file',  # zero bytes
    'truncated_image',  # a JPEG/PNG that ends early or does not decode
    'not_an_image',  # bytes no image decoder accepts
    'empty_caption',  # a caption that is empty or white space
    'bad_encoding',  # a caption or text that is not valid UTF-8
    'empty_text',  # a text-corpus document without text
    'missing_field',  # a shard record without its image or caption
    'broken_record',  # a shard record whose fields do not parse
    'broken_shard',  # a shard that cannot be opened or read to its end
    'rejected_by_pipeline',  # a stream sample the pipeline returned None for
)
REASON_INDEX = {reason: i for i, reason in enumerate(SKIP_REASONS)}


class BadDataError(Exception):
    """A sample cannot be used; ``reason`` is one of :data:`SKIP_REASONS`.

    Args:
        reason (str): Why, one of :data:`SKIP_REASONS`.
        detail (str): What and where (path, shard, key).
    """

    def __init__(self, reason: str, detail: str = '') -> None:
        if reason not in REASON_INDEX:
            raise ValueError(f'Unknown skip reason {reason!r}; use one of '
                             f'{SKIP_REASONS}.')
        super().__init__(f'{reason}: {detail}' if detail else reason)
        self.reason = reason
        self.detail = detail


class SkipCounter:
    """Skips of one process, pending until a sample carries them.

    Args:
        max_warnings (int): Skips logged one by one (with their detail) per
            reason in this process; the rest are only counted.
    """

    def __init__(self, max_warnings: int = 5) -> None:
        self.max_warnings = max_warnings
        self.pending = np.zeros(len(SKIP_REASONS), np.int64)
        self.totals = np.zeros(len(SKIP_REASONS), np.int64)

    def record(self, reason: str, detail: str = '', count: int = 1) -> None:
        """Count ``count`` skips for ``reason``; log the first few."""
        if reason not in REASON_INDEX:
            raise ValueError(f'Unknown skip reason {reason!r}; use one of '
                             f'{SKIP_REASONS}.')
        index = REASON_INDEX[reason]
        if self.totals[index] < self.max_warnings:
            more = ' (further ones are only counted)' if (
                self.totals[index] + 1 == self.max_warnings) else ''
            print_log(f'Skipped a sample ({reason}): {detail}{more}',
                      logger='current', level=30)
        self.pending[index] += count
        self.totals[index] += count

    def pop(self) -> torch.Tensor:
        """The pending counts as an int64 tensor; pending starts again at
        zero."""
        counts = torch.from_numpy(self.pending.copy())
        self.pending[:] = 0
        return counts

    def attach(self, sample: dict) -> dict:
        """Add the pending counts to ``sample['skipped']`` (created when
        missing) and return ``sample``."""
        counts = self.pop()
        if 'skipped' in sample:
            counts = counts + sample['skipped']
        sample['skipped'] = counts
        return sample


_COUNTER: Optional[SkipCounter] = None
_COUNTER_PID: Optional[int] = None


def skip_counter() -> SkipCounter:
    """The :class:`SkipCounter` of this process.

    A forked dataloader worker starts with a fresh counter: counts pending
    in the parent stay with the parent, so nothing is counted twice.
    """
    global _COUNTER, _COUNTER_PID
    if _COUNTER is None or _COUNTER_PID != os.getpid():
        _COUNTER, _COUNTER_PID = SkipCounter(), os.getpid()
    return _COUNTER


def record_skip(reason: str, detail: str = '', count: int = 1) -> None:
    """Count a skipped sample in this process (see :class:`SkipCounter`)."""
    skip_counter().record(reason, detail, count)


def check_caption(caption, detail: str = '') -> str:
    """``caption`` without surrounding white space, if it is usable text.

    Annotation lists are read with ``errors='surrogateescape'``, so bytes
    that are not UTF-8 arrive as lone surrogates (as do ``\\udc..``
    escapes in JSON); such a caption cannot be tokenized.

    Args:
        caption: The caption as read (any type).
        detail (str): Where it comes from, for the error.

    Raises:
        BadDataError: ``empty_caption`` (not a string, empty or white
            space) or ``bad_encoding`` (not valid UTF-8).
    """
    if not isinstance(caption, str) or not caption.strip():
        raise BadDataError('empty_caption', detail)
    try:
        caption.encode('utf-8')
    except UnicodeEncodeError:
        raise BadDataError('bad_encoding', detail) from None
    return caption.strip()


def counts_to_dict(counts) -> Dict[str, int]:
    """``{reason: count}`` of the non-zero entries of a counts vector."""
    return {reason: int(count)
            for reason, count in zip(SKIP_REASONS, counts) if count}
