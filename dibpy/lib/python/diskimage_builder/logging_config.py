"""``setup()``: the logging an element tool gets from diskimage-builder.

One stream handler on the root logger, ``LEVEL name [-] message``; DEBUG (with the
function and source location appended to debug records) when ``DIB_DEBUG_TRACE`` is
above 0, else INFO.  ``DIB_PYTHON_LOGGING_CONFIG_FILE`` names a JSON ``dictConfig`` that
replaces it.  No timestamp: the build's own log adds one.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from typing import Any

FORMAT = "%(levelname)s %(name)s [-] %(message)s"
DEBUG_SUFFIX = " %(funcName)s %(pathname)s:%(lineno)d"


class DibFormatter(logging.Formatter):
    """FORMAT, with DEBUG_SUFFIX on debug records."""

    def __init__(self, fmt: str = FORMAT, debug_suffix: str = DEBUG_SUFFIX, **kw: Any) -> None:
        super().__init__(fmt=fmt, **kw)
        self._plain = logging.Formatter(fmt, datefmt=kw.get("datefmt"))
        self._debug = logging.Formatter(fmt + debug_suffix, datefmt=kw.get("datefmt"))

    def format(self, record: logging.LogRecord) -> str:
        chosen = self._debug if record.levelno == logging.DEBUG else self._plain
        return chosen.format(record)


def _level() -> str:
    try:
        trace = int(os.environ.get("DIB_DEBUG_TRACE", "0") or "0")
    except ValueError:
        trace = 0
    return "DEBUG" if trace > 0 else "INFO"


def default_config() -> dict[str, Any]:
    level = _level()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "standard": {
                "()": f"{__name__}.DibFormatter",
                "fmt": FORMAT,
                "debug_suffix": DEBUG_SUFFIX,
            }
        },
        "handlers": {
            "default": {
                "level": level,
                "class": "logging.StreamHandler",
                "formatter": "standard",
            }
        },
        "loggers": {"": {"handlers": ["default"], "level": level, "propagate": True}},
    }


def setup() -> None:
    """Configure logging for an element tool (see the module docstring)."""
    path = os.environ.get("DIB_PYTHON_LOGGING_CONFIG_FILE")
    if path:
        with open(path) as f:
            config = json.load(f)
    else:
        config = default_config()
    logging.config.dictConfig(config)
