"""mmvlp's registries: children of mmengine's root registries, scope ``mmvlp``.

Every registry names the modules that register into it (``locations``), so a
config with ``default_scope = 'mmvlp'`` or a ``type='mmvlp.X'`` reference from an
mmdet / mmseg / mmpretrain config finds mmvlp's classes after importing them
lazily.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import \
    RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

__all__ = [
    'RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS', 'LOG_PROCESSORS',
    'STRATEGIES', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS',
    'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'METRICS', 'EVALUATOR',
    'TASK_UTILS', 'VISUALIZERS', 'VISBACKENDS', 'INFERENCERS', 'FUNCTIONS',
    'build_scoped'
]


def _child(name: str, parent: Registry, *locations: str) -> Registry:
    """Make the mmvlp child of an mmengine root registry."""
    return Registry(
        name, parent=parent, scope='mmvlp', locations=list(locations))


# ``locations`` lists the mmvlp packages that register into a registry; a new
# package (engine, datasets, evaluation, ...) adds itself where it registers.
# tests/test_registry.py imports every location.

# Training loop and its parts.
RUNNERS = _child('runner', MMENGINE_RUNNERS)
RUNNER_CONSTRUCTORS = _child('runner constructor',
                             MMENGINE_RUNNER_CONSTRUCTORS)
LOOPS = _child('loop', MMENGINE_LOOPS, 'mmvlp.engine')
HOOKS = _child('hook', MMENGINE_HOOKS, 'mmvlp.engine')
LOG_PROCESSORS = _child('log processor', MMENGINE_LOG_PROCESSORS)
STRATEGIES = _child('strategy', MMENGINE_STRATEGIES)

# Data.
DATASETS = _child('dataset', MMENGINE_DATASETS, 'mmvlp.datasets')
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS)
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS, 'mmvlp.datasets')

# Models.
# Text tokenizers register here too (``mmvlp.text``), so a config can name
# one: ``tokenizer=dict(type='CLIPBPETokenizer')``.
MODELS = _child('model', MMENGINE_MODELS, 'mmvlp.models', 'mmvlp.text')
MODEL_WRAPPERS = _child('model wrapper', MMENGINE_MODEL_WRAPPERS,
                        'mmvlp.models')
WEIGHT_INITIALIZERS = _child('weight initializer',
                             MMENGINE_WEIGHT_INITIALIZERS, 'mmvlp.models')
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, 'mmvlp.models')

# Optimisation.
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS)
OPTIM_WRAPPERS = _child('optim wrapper', MMENGINE_OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                    'mmvlp.engine')
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS)

# Evaluation and visualisation.
METRICS = _child('metric', MMENGINE_METRICS, 'mmvlp.evaluation')
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR)
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS)
VISBACKENDS = _child('vis backend', MMENGINE_VISBACKENDS)

# Inference and plain functions (e.g. collate functions).
INFERENCERS = _child('inferencer', MMENGINE_INFERENCERS)
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS, 'mmvlp.engine')


def build_scoped(registry: Registry, cfg: dict):
    """Build ``cfg`` with ``registry``, reading an unscoped ``type`` as mmvlp's.

    mmengine resolves an unscoped type in the *current default scope*, which
    is mmdet's or mmseg's when an mmvlp model is built from their configs.
    mmvlp's own sub-modules (quantizers, targets, towers) must resolve in
    mmvlp's scope wherever they are built; an explicit scope (``'mmpretrain.
    VisionTransformer'``) is kept.

    Args:
        registry (Registry): An mmvlp registry, e.g. ``MODELS``.
        cfg (dict): Config with a ``type``.

    Returns:
        The built object.
    """
    cfg = dict(cfg)
    obj_type = cfg.get('type')
    if isinstance(obj_type, str) and '.' not in obj_type:
        cfg['type'] = f'{registry.scope}.{obj_type}'
    return registry.build(cfg)
