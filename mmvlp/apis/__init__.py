"""Inferencers: feature extraction, zero-shot classification, retrieval,
VQA and captioning with BEiT-3 models."""
from .embedding_map import plot_embedding_map, project_2d
from .encoder_models import list_models
from .feature_extractor import FeatureExtractor
from .vl_inferencers import (ImageCaptionInferencer,
                             ImageToTextRetrievalInferencer,
                             TextToImageRetrievalInferencer,
                             VisualQuestionAnsweringInferencer,
                             build_test_pipeline, init_vl_model)
from .zero_shot import ZeroShotClassificationInferencer

__all__ = [
    'ImageCaptionInferencer', 'VisualQuestionAnsweringInferencer',
    'TextToImageRetrievalInferencer', 'ImageToTextRetrievalInferencer',
    'init_vl_model', 'build_test_pipeline', 'FeatureExtractor',
    'ZeroShotClassificationInferencer', 'plot_embedding_map', 'project_2d',
    'list_models'
]
