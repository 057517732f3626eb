"""Deprecated path of :mod:`mmvlp.runtime.launch` (moved there).

``mmvlp.utils.launch`` stays importable as an alias: the import puts
the new module itself in its place (the same module object, so attribute
access and ``mock.patch`` reach the real code). New code imports
``mmvlp.runtime.launch``; see docs/architecture.md.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('mmvlp.runtime.launch')
