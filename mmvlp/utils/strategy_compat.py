"""Deprecated path of :mod:`mmvlp.compat.strategies` (moved there).

``mmvlp.utils.strategy_compat`` stays importable as an alias: the import puts
the new module itself in its place (the same module object, so attribute
access and ``mock.patch`` reach the real code). New code imports
``mmvlp.compat.strategies``; see docs/architecture.md.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('mmvlp.compat.strategies')
