"""mmpretrain's ``ImageClassifier`` that also loads official BEiT-3 files."""
from mmpretrain.models.classifiers import ImageClassifier

from mmvlp.registry import MODELS
from ..converters.unilm_beit3_tasks import OfficialCheckpointMixin


@MODELS.register_module()
class BEiT3ImageClassifier(OfficialCheckpointMixin, ImageClassifier):
    """mmpretrain's ``ImageClassifier`` (``mmvlp.BEiT3`` backbone,
    ``mmvlp.BEiT3ClsHead``) that loads the official BEiT-3 ImageNet files
    as released (``load_from``, ``tools/test.py CONFIG FILE``,
    ``init_cfg=dict(type='Pretrained', checkpoint=FILE)``): the official
    ``beit3.*`` backbone goes to ``backbone`` (text parts dropped when the
    file has them), ``fc_norm.*`` to ``head.fc_norm`` and ``head.*`` to
    ``head.fc`` (see :mod:`mmvlp.models.converters.unilm_beit3_tasks`).
    Everything else is mmpretrain's ``ImageClassifier``; its arguments are
    the same.
    """


__all__ = ['BEiT3ImageClassifier']
