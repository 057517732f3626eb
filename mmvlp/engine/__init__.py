"""Training-time extensions of mmengine: hooks."""
from .hooks import *  # noqa: F401,F403
