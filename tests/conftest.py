"""Make ``tests/helpers`` importable and keep CPU threads predictable."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
