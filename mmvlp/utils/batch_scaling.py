"""Deprecated path of :mod:`mmvlp.runtime.batch_scaling` (moved there).

``mmvlp.utils.batch_scaling`` stays importable as an alias: the import puts
the new module itself in its place (the same module object, so attribute
access and ``mock.patch`` reach the real code). New code imports
``mmvlp.runtime.batch_scaling``; see docs/architecture.md.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('mmvlp.runtime.batch_scaling')
