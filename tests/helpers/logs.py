"""Catch what the current MMLogger logs, for tests of log messages."""
import logging
from typing import List, Optional

from mmengine.logging import MMLogger


class LogCatcher(logging.Handler):
    """Collect ``(level, message)`` of the current MMLogger inside ``with``."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))

    def __enter__(self):
        MMLogger.get_current_instance().addHandler(self)
        return self

    def __exit__(self, *exc):
        MMLogger.get_current_instance().removeHandler(self)

    def matching(self, text: str, level: Optional[int] = None) -> List[str]:
        """Messages that contain ``text`` (at ``level``, if given)."""
        return [m for lv, m in self.records
                if text in m and (level is None or lv == level)]

    def warnings(self) -> List[str]:
        """Messages at WARNING level or above."""
        return [m for level, m in self.records if level >= logging.WARNING]
