"""A text-only corpus for masked language modeling."""
from typing import Dict, List

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmvlp.registry import DATASETS
from mmvlp.text import TextTokenizer
from mmvlp.text.training import iter_corpus


@DATASETS.register_module()
class TextCorpusDataset(BaseDataset):
    """Documents of a plain-text or jsonl file, split into segments.

    Every non-empty line is a document; it is tokenized once and cut into
    segments of at most ``max_length - 2`` pieces, each a sample
    ``text_ids = [<s>] + pieces + [</s>]`` (an int64 array). Blank lines are
    no documents; documents without any piece (e.g. a jsonl record with an
    empty ``field``) and lines that are not valid UTF-8 are skipped and
    counted (``empty_text``, ``bad_encoding``; ``num_skipped``,
    ``load_skips`` for :class:`~mmvlp.engine.DataSkipHook`).

    Args:
        ann_file (str): Text file (one document per line) or jsonl.
        tokenizer (dict): :class:`~mmvlp.text.TextTokenizer` arguments
            (``model_file``, ``style``, ``max_length``).
        field (str, optional): jsonl field with the text.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self, ann_file: str, tokenizer: dict, field: str = None,
                 **kwargs) -> None:
        self.tokenizer = TextTokenizer(**tokenizer)
        self.field = field
        self.num_skipped = 0
        self.load_skips: Dict[str, int] = {}
        super().__init__(ann_file=ann_file, **kwargs)

    def load_data_list(self) -> List[dict]:
        tokenizer = self.tokenizer
        step = tokenizer.max_length - 2
        data_list, skips = [], {}
        for document in iter_corpus(self.ann_file, self.field,
                                    keep_empty=True):
            try:
                document.encode('utf-8')
            except UnicodeEncodeError:
                skips['bad_encoding'] = skips.get('bad_encoding', 0) + 1
                continue
            pieces = tokenizer.piece_ids(document)
            if not pieces:
                skips['empty_text'] = skips.get('empty_text', 0) + 1
                continue
            for start in range(0, len(pieces), step):
                ids = [tokenizer.bos_id] + pieces[start:start + step] + [
                    tokenizer.eos_id]
                data_list.append(dict(text_ids=np.asarray(ids, np.int64)))
        self.load_skips = skips
        self.num_skipped = sum(skips.values())
        if self.num_skipped:
            print_log(f'TextCorpusDataset({self.ann_file}): skipped '
                      f'{self.num_skipped} document(s) ({skips}).',
                      logger='current', level=30)
        return data_list
