"""Deprecated path of :mod:`mmvlp.checkpoint.files` (moved there).

``mmvlp.utils.checkpoint_files`` stays importable as an alias: the import puts
the new module itself in its place (the same module object, so attribute
access and ``mock.patch`` reach the real code). New code imports
``mmvlp.checkpoint.files``; see docs/architecture.md.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module('mmvlp.checkpoint.files')
