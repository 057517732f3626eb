"""Deprecated path of :mod:`mmvlp.compat.torch_load` (moved there).

``mmvlp.utils.checkpoint_safety`` stays importable as an alias: the import puts
the new module itself in its place (the same module object, so attribute
access and ``mock.patch`` reach the real code). New code imports
``mmvlp.compat.torch_load``; see docs/architecture.md.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('mmvlp.compat.torch_load')
