"""Make ``tests/helpers`` importable; shared fixtures."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope='session')
def vgg_checkpoint(tmp_path_factory):
    """Random VGG-16 feature weights in torchvision's layout (half precision
    keeps the file small); stands in for the weights a user supplies."""
    from torchvision.models import vgg16
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('vgg') / 'vgg16.pth'
    state = {k: v.half() for k, v in vgg16(weights=None).state_dict().items()
             if k.startswith('features.')}
    torch.save(state, path)
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """Each test starts with the default-scope state the session started
    with: a Runner built by one test (mmdet's, mmseg's) leaves its scope
    current, and unscoped builds in later tests would search that scope."""
    from mmengine.registry import DefaultScope
    saved = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
