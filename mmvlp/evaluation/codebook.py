"""Codebook usage of a visual tokenizer over a dataset."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric

from mmvlp.registry import METRICS


@METRICS.register_module()
class CodebookUsage(BaseMetric):
    """Share of codes used, perplexity and dead codes over a whole dataset.

    Expects each data sample to carry ``token_ids`` (any shape) and
    ``vocab_size`` (what the tokenizers' ``predict`` returns). For implicit
    codebooks too large to histogram (BSQ with many bits), only the number of
    distinct ids is reported.

    Args:
        max_histogram (int): Largest vocabulary histogrammed exactly.
        collect_device (str): Device for gathering results across ranks.
        prefix (str, optional): Metric name prefix.
    """
    default_prefix = 'codebook'

    def __init__(self,
                 max_histogram: int = 1 << 20,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.max_histogram = max_histogram

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(
                dict(ids=sample['token_ids'].flatten().cpu(),
                     vocab_size=int(sample['vocab_size'])))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        ids = torch.cat([r['ids'] for r in results])
        vocab = results[0]['vocab_size']
        distinct = ids.unique().numel()
        metrics = dict(distinct_codes=float(distinct), tokens=float(ids.numel()))
        if vocab <= self.max_histogram:
            counts = torch.bincount(ids, minlength=vocab).double()
            probs = counts / counts.sum()
            entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
            metrics.update(
                usage=100. * distinct / vocab,
                perplexity=entropy.exp().item(),
                dead_codes=float(vocab - distinct))
        return metrics
