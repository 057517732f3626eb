"""The official implementations, built to match mmvlp models, for parity
tests and side-by-side benchmarks (needs the test requirements:
``torchscale`` for BEiT-3; mmpretrain is a runtime dependency)."""
from .reference_finetune import (OfficialTaskModel, official_state,
                                 official_task_model)
from .reference_models import (mmpretrain_vqkd, mmvlp_beit3_from_torchscale,
                               mmvlp_vqkd_from_mmpretrain, official_checkpoint,
                               torchscale_beit3)

__all__ = [
    'OfficialTaskModel', 'official_task_model', 'official_state',
    'torchscale_beit3', 'official_checkpoint', 'mmvlp_beit3_from_torchscale',
    'mmpretrain_vqkd', 'mmvlp_vqkd_from_mmpretrain'
]
