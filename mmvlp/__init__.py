"""mmvlp: BEiT-3 style unified vision-language pretraining for OpenMMLab 2.x.

Importing mmvlp applies its compatibility fixes for the pinned stack (see
docs/compatibility.md).
"""
import mmengine
from mmengine.utils import digit_version

from .compat import apply_compat_patches
from .version import __version__, version_info

MMENGINE_RANGE = ('0.10.0', '0.11.0')

if not (digit_version(MMENGINE_RANGE[0]) <= digit_version(mmengine.__version__)
        < digit_version(MMENGINE_RANGE[1])):
    raise ImportError(
        f'mmvlp {__version__} needs mmengine>={MMENGINE_RANGE[0]},'
        f'<{MMENGINE_RANGE[1]} but found {mmengine.__version__}; run '
        '`make install` (or pip install "mmengine==0.10.7").')

apply_compat_patches()
# mmengine's AmpOptimWrapper asserts a GPU and scales bf16 losses; mmvlp's
# takes its registry name (mmvlp/engine/optimizers/amp.py).
from .engine.optimizers.amp import register_amp_optim_wrapper  # noqa: E402

register_amp_optim_wrapper()

__all__ = ['__version__', 'version_info']
