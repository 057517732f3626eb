"""Input checks that do not stop the host on an accelerator.

A data-dependent ``if tensor.max() > limit: raise`` reads a value from the
device: the host waits for every queued kernel (a sync), and in a training
step the next launches start late. :func:`check_on_device` keeps such
checks: on the CPU it raises a ``ValueError`` with a full message (reading a
CPU tensor costs no sync); on an accelerator it queues a device-side assert
(``torch._assert_async``) that fails the run, with the message, when the
kernel runs.
"""
from typing import Callable, Optional, Union

import torch

__all__ = ['check_on_device']


def check_on_device(condition: torch.Tensor,
                    message: Union[str, Callable[[], str]],
                    device_message: Optional[str] = None) -> None:
    """Require a boolean scalar tensor to be True.

    Args:
        condition (Tensor): A boolean scalar on any device.
        message (str | callable): The error message, or a function that
            builds it (called only when the check fails on the CPU, so it
            may read values).
        device_message (str, optional): The message of the device-side
            assert (values cannot be read without a sync); defaults to
            ``message`` when it is a string.

    Raises:
        ValueError: ``condition`` is False on the CPU. On an accelerator the
            failure is a device-side assert instead (no host sync).
    """
    kind = condition.device.type
    if kind in ('cpu', 'meta'):
        if kind == 'cpu' and not bool(condition):
            raise ValueError(message() if callable(message) else message)
        return
    if device_message is None:
        device_message = message if isinstance(message, str) else \
            'an mmvlp input check failed (run on the CPU for details)'
    torch._assert_async(condition, device_message)
