"""What this host offers: an accelerator mmengine sets up itself, and
deepspeed (an optional requirement).

A leaf module: the launch setup (:mod:`mmvlp.runtime.launch`), the strategy
patches (:mod:`mmvlp.compat.strategies`) and checkpoint consolidation all ask
it, without importing each other.
"""
from mmengine.device import get_device

__all__ = ['accelerator_available', 'deepspeed_available']

# Devices whose distributed setup mmengine's ``init_dist`` handles itself.
_MMENGINE_DIST_DEVICES = ('cuda', 'npu', 'mlu', 'musa')


def accelerator_available() -> bool:
    """Whether mmengine sets up this host's device itself (CUDA, NPU, MLU,
    MUSA); False on CPU-only (and MPS) hosts."""
    return get_device() in _MMENGINE_DIST_DEVICES


def deepspeed_available() -> bool:
    """Whether deepspeed imports (it is an optional requirement)."""
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return False
    return True
