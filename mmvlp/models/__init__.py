"""mmvlp models; importing this registers them in ``mmvlp.registry.MODELS``."""
from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .classifiers import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .multimodal import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .quantizers import *  # noqa: F401,F403
from .tokenizers import *  # noqa: F401,F403
