"""Checkpoint converters from reference implementations to mmvlp names."""
from .unilm_beit3 import (ConversionReport, convert_unilm_beit3,
                          is_official_beit3, normalize_official_keys,
                          unwrap_checkpoint)
from .unilm_beit3_tasks import (OFFICIAL_TASKS, OfficialCheckpointMixin,
                                OfficialMapping, detect_task,
                                load_official_in_place, map_official_beit3,
                                task_of_model)
from .qlip import QLIPConversion, convert_qlip, load_qlip
from .vqkd import VQKDConversion, convert_vqkd

__all__ = [
    'ConversionReport', 'convert_unilm_beit3', 'unwrap_checkpoint',
    'normalize_official_keys', 'is_official_beit3', 'OFFICIAL_TASKS',
    'OfficialMapping', 'OfficialCheckpointMixin', 'detect_task',
    'task_of_model', 'map_official_beit3', 'load_official_in_place',
    'VQKDConversion', 'convert_vqkd',
    'QLIPConversion', 'convert_qlip', 'load_qlip'
]
