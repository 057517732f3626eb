"""Datasets, demo data, bad-data accounting and data transforms."""
from .demo_data import SceneShape, make_demo_dataset, make_scene
from .demo_vl import make_demo_vl_dataset
from .demo_dense import (DEMO_DET_CLASSES, DEMO_SEG_CLASSES, DEMO_SEG_PALETTE,
                         make_demo_ade, make_demo_coco)
from .image_text import ImageTextDataset, load_image_text_list
from .skips import (SKIP_REASONS, BadDataError, SkipCounter, record_skip,
                    skip_counter)
from .text_corpus import TextCorpusDataset
from .transforms import *  # noqa: F401,F403
from .vl_datasets import (ImageCaptionDataset, ImageTextRetrievalDataset,
                          NLVR2Dataset, VQAv2Dataset)
from .webdataset_shards import WebShardDataset, expand_shard_urls

__all__ = [
    'make_demo_dataset', 'make_scene', 'SceneShape', 'make_demo_coco',
    'make_demo_ade', 'DEMO_DET_CLASSES', 'DEMO_SEG_CLASSES',
    'DEMO_SEG_PALETTE', 'ImageTextDataset', 'load_image_text_list',
    'TextCorpusDataset', 'WebShardDataset', 'expand_shard_urls',
    'SKIP_REASONS', 'BadDataError', 'SkipCounter', 'record_skip',
    'skip_counter', 'make_demo_vl_dataset', 'ImageTextRetrievalDataset',
    'ImageCaptionDataset', 'VQAv2Dataset', 'NLVR2Dataset'
]
