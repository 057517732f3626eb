"""Fine-tuned vision-language task models on the BEiT-3 backbone."""
from .base import BEIT3_MEAN, BEIT3_STD, BEiT3TaskModel, stack_field
from .captioning import BEiT3Captioner, smoothed_cross_entropy
from .encoder_loading import load_encoder_checkpoint
from .features import image_features, pair_features, text_features
from .generation import (CachedSteps, FullSteps, beam_search, greedy_search,
                         prefix_causal_mask)
from .nlvr2 import BEiT3NLVR2
from .retrieval import BEiT3Retrieval
from .vqa import BEiT3VQA
from .zero_shot import PROMPT_TEMPLATES, ZeroShotClassifier

__all__ = [
    'BEiT3TaskModel', 'stack_field', 'BEIT3_MEAN', 'BEIT3_STD',
    'BEiT3Retrieval', 'BEiT3VQA', 'BEiT3NLVR2', 'BEiT3Captioner',
    'smoothed_cross_entropy', 'CachedSteps', 'FullSteps', 'greedy_search',
    'beam_search', 'prefix_causal_mask', 'ZeroShotClassifier',
    'PROMPT_TEMPLATES', 'load_encoder_checkpoint', 'image_features',
    'text_features', 'pair_features'
]
