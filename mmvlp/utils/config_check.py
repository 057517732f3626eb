"""Deprecated path of :mod:`mmvlp.runtime.config_check` (moved there).

``mmvlp.utils.config_check`` stays importable as an alias: the import puts
the new module itself in its place (the same module object, so attribute
access and ``mock.patch`` reach the real code). New code imports
``mmvlp.runtime.config_check``; see docs/architecture.md.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('mmvlp.runtime.config_check')
