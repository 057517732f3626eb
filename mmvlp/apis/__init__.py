"""Inferencers: retrieval, VQA and captioning with BEiT-3 models."""
from .vl_inferencers import (ImageCaptionInferencer,
                             ImageToTextRetrievalInferencer,
                             TextToImageRetrievalInferencer,
                             VisualQuestionAnsweringInferencer,
                             build_test_pipeline, init_vl_model)

__all__ = [
    'ImageCaptionInferencer', 'VisualQuestionAnsweringInferencer',
    'TextToImageRetrievalInferencer', 'ImageToTextRetrievalInferencer',
    'init_vl_model', 'build_test_pipeline'
]
