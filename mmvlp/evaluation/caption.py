"""Caption metrics (BLEU, METEOR, ROUGE-L, CIDEr) that run offline.

mmpretrain's ``COCOCaption`` runs pycocoevalcap's ``COCOEvalCap``, whose
SPICE scorer downloads Stanford CoreNLP on first use, so it fails without
internet. :class:`CaptionMetric` runs pycocoevalcap's own scorers without
SPICE: the PTB tokenizer (Java, bundled jar), BLEU-1..4, ROUGE-L, CIDEr(-D)
and optionally METEOR (Java, bundled jar, 2 GB heap). Without Java it falls
back to a Python tokenizer (lower case, the PTB tokenizer's punctuation
removed) and says so; METEOR then is unavailable.
"""
import json
import re
import shutil
from typing import Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmvlp.registry import METRICS

TOKENIZERS = ('auto', 'ptb', 'simple')
# What pycocoevalcap's PTBTokenizer drops after tokenizing.
_PUNCTUATION = ("''", "'", '``', '`', '-LRB-', '-RRB-', '-LCB-', '-RCB-',
                '.', '?', '!', ',', ':', '-', '--', '...', ';')


def simple_tokenize(caption: str) -> str:
    """Lower case, punctuation split off and dropped, single spaces."""
    caption = re.sub(r'([.,!?;:()"`\-])', r' \1 ', caption.lower())
    words = [w for w in caption.split() if w not in _PUNCTUATION]
    return ' '.join(words)


def java_available() -> bool:
    """Whether a ``java`` executable is on the PATH."""
    return shutil.which('java') is not None


def caption_scores(references: Dict[int, List[str]],
                   predictions: Dict[int, str],
                   tokenizer: str = 'auto',
                   meteor: bool = False) -> Dict[str, float]:
    """BLEU-1..4, ROUGE-L, CIDEr (and METEOR) of predictions against
    references, with pycocoevalcap's scorers.

    Args:
        references (dict): Image id to reference captions.
        predictions (dict): Image id to the predicted caption; every id must
            have references.
        tokenizer (str): ``'ptb'`` (Java), ``'simple'`` or ``'auto'`` (PTB
            when Java is there).
        meteor (bool): Also METEOR (needs Java).

    Returns:
        dict: ``Bleu_1`` ... ``Bleu_4``, ``ROUGE_L``, ``CIDEr`` (and
        ``METEOR``) on pycocoevalcap's scale (CIDEr is not in percent).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    if tokenizer not in TOKENIZERS:
        raise ValueError(f'tokenizer must be one of {TOKENIZERS}, got '
                         f'{tokenizer!r}.')
    missing = [i for i in predictions if not references.get(i)]
    if missing:
        raise ValueError(f'{len(missing)} predicted image(s) have no '
                         f'reference caption (e.g. image_id {missing[0]}); '
                         'give gt_caption in the samples or an ann_file.')
    if not predictions:
        raise ValueError('No predicted captions to score.')
    ids = sorted(predictions)
    if tokenizer == 'auto':
        tokenizer = 'ptb' if java_available() else 'simple'
        if tokenizer == 'simple':
            print_log('CaptionMetric: no java on the PATH, so captions are '
                      'tokenized in Python instead of by the PTB tokenizer '
                      '(scores can differ slightly from COCO\'s).',
                      logger='current', level=30)
    if tokenizer == 'ptb':
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
        ptb = PTBTokenizer()
        refs = ptb.tokenize({i: [dict(caption=c) for c in references[i]]
                             for i in ids})
        preds = ptb.tokenize({i: [dict(caption=predictions[i])]
                              for i in ids})
    else:
        refs = {i: [simple_tokenize(c) for c in references[i]] for i in ids}
        preds = {i: [simple_tokenize(predictions[i])] for i in ids}
    scores = {}
    bleu, _ = Bleu(4).compute_score(refs, preds, verbose=0)
    scores.update({f'Bleu_{n + 1}': float(b) for n, b in enumerate(bleu)})
    scores['ROUGE_L'] = float(Rouge().compute_score(refs, preds)[0])
    scores['CIDEr'] = float(Cider().compute_score(refs, preds)[0])
    if meteor:
        if not java_available():
            raise RuntimeError('METEOR needs java on the PATH; set '
                               'meteor=False.')
        from pycocoevalcap.meteor.meteor import Meteor
        scores['METEOR'] = float(Meteor().compute_score(refs, preds)[0])
    return scores


@METRICS.register_module()
class CaptionMetric(BaseMetric):
    """Caption scores of ``pred_caption`` against reference captions, offline
    (see the module docstring for what differs from mmpretrain's
    ``COCOCaption``: no SPICE).

    References come from the samples (``gt_caption``, as
    :class:`~mmvlp.datasets.ImageCaptionDataset` gives them in test mode)
    or from a COCO-format caption file (``ann_file``, e.g. the Karpathy
    val/test ground truth that mmpretrain and BLIP use), matched by
    ``image_id``.

    Args:
        ann_file (str, optional): COCO-format captions JSON.
        tokenizer (str): ``'auto'``, ``'ptb'`` or ``'simple'``.
        meteor (bool): Also METEOR (Java, about 10 s to start).
        collect_device (str): Device for gathering results across ranks.
        prefix (str, optional): Metric name prefix (default ``caption``).
    """
    default_prefix = 'caption'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 tokenizer: str = 'auto',
                 meteor: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if tokenizer not in TOKENIZERS:
            raise ValueError(f'tokenizer must be one of {TOKENIZERS}, got '
                             f'{tokenizer!r}.')
        self.ann_file = ann_file
        self.tokenizer = tokenizer
        self.meteor = meteor

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            if sample.get('pred_caption') is None:
                raise ValueError('CaptionMetric needs pred_caption in the '
                                 'predicted samples.')
            refs = sample.get('gt_caption') or []
            self.results.append(dict(
                image_id=int(sample.get('image_id')),
                caption=sample.get('pred_caption'),
                references=[str(r) for r in refs]))

    def _file_references(self) -> Dict[int, List[str]]:
        with open(self.ann_file, encoding='utf-8') as f:
            data = json.load(f)
        references: Dict[int, List[str]] = {}
        for ann in data.get('annotations', []):
            references.setdefault(int(ann['image_id']), []).append(
                ann['caption'])
        return references

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        predictions, references = {}, {}
        for result in results:  # duplicates of padded samplers: first wins
            predictions.setdefault(result['image_id'], result['caption'])
            if result['references']:
                references.setdefault(result['image_id'],
                                      result['references'])
        if self.ann_file is not None:
            for image_id, refs in self._file_references().items():
                references.setdefault(image_id, refs)
        return caption_scores(references, predictions, self.tokenizer,
                              self.meteor)


__all__ = ['CaptionMetric', 'caption_scores', 'simple_tokenize',
           'java_available']
