"""mmcv 2.1.0's CPU kernels of the detection ops under bf16 autocast.

mmcv's CPU ``nms`` and ``RoIAlign`` kernels take float32 only ("expected
scalar type Float but found BFloat16"): an mmdet detector trained with
mmvlp's ``AmpOptimWrapper`` on a CPU with bf16 units (bf16 autocast) fails
at the first proposal step. The CUDA kernels take bf16 and are left alone.
On CPU the two ops run in float32 on the (bf16-rounded) inputs and return
the input's dtype, which is what autocast does with the ops it lists as
float32-only. Applied by ``AmpOptimWrapper`` when it turns CPU bf16
autocast on and mmcv's ops are loaded (never importing them itself).
Unnecessary once mmcv's CPU kernels dispatch on bf16. Test:
tests/test_amp.py (``test_mmcv_cpu_ops_under_bf16``) and the mmdet recipe
tests (tests/test_transfer_mmdet.py).
"""
import functools
import sys

import torch

__all__ = ['patch_mmcv_cpu_ops']

_LOW = (torch.bfloat16, torch.float16)


def _needs_fp32(tensor: torch.Tensor) -> bool:
    """A CPU tensor in a precision mmcv's CPU kernels refuse."""
    return tensor.device.type == 'cpu' and tensor.dtype in _LOW


def patch_mmcv_cpu_ops() -> bool:
    """Make mmcv's CPU ``nms`` and ``RoIAlign`` accept bf16/fp16 inputs.

    Idempotent; a no-op (False) when ``mmcv.ops`` is not imported.

    Returns:
        bool: Whether the ops are patched now.
    """
    nms_module = sys.modules.get('mmcv.ops.nms')
    roi_module = sys.modules.get('mmcv.ops.roi_align')
    if nms_module is None or roi_module is None:
        return False
    if getattr(nms_module.nms, '_mmvlp_fp32_on_cpu', False):
        return True
    nms = nms_module.nms

    @functools.wraps(nms)
    def nms_fp32_on_cpu(boxes, scores, *args, **kwargs):
        if not (torch.is_tensor(boxes) and _needs_fp32(boxes)):
            return nms(boxes, scores, *args, **kwargs)
        dets, keep = nms(boxes.float(), scores.float(), *args, **kwargs)
        return dets.to(boxes.dtype), keep

    nms_fp32_on_cpu._mmvlp_fp32_on_cpu = True
    # batched_nms looks ``nms`` up in this module by name.
    nms_module.nms = nms_fp32_on_cpu

    forward = roi_module.RoIAlign.forward

    @functools.wraps(forward)
    def roi_align_fp32_on_cpu(self, input, rois):
        if not _needs_fp32(input):
            return forward(self, input, rois)
        return forward(self, input.float(), rois.float()).to(input.dtype)

    roi_module.RoIAlign.forward = roi_align_fp32_on_cpu
    return True
