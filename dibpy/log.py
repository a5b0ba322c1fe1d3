"""Logging set-up shared by every command."""

from __future__ import annotations

import logging
import os
import sys

LOG = logging.getLogger("dibpy")


class _Formatter(logging.Formatter):
    def __init__(self, timestamps: bool | None = None) -> None:
        super().__init__()
        #: None: stamp lines unless stderr is a terminal (DIBPY_LOG_TIMESTAMPS forces them)
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname.lower()}: {msg}"
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        stamp = self.timestamps
        if stamp is None:
            stamp = bool(os.environ.get("DIBPY_LOG_TIMESTAMPS")) or not sys.stderr.isatty()
        if stamp:
            return f"{self.formatTime(record, '%H:%M:%S')} {msg}"
        return msg


def setup_logging(
    debug: int = 0,
    logfile: str | None = None,
    quiet: bool = False,
    timestamps: bool | None = None,
    console_level: int | None = None,
) -> None:
    """Send dibpy's log to stderr (and optionally a file).  Idempotent.

    ``quiet``: the console shows warnings and errors only; ``timestamps`` False drops the
    time from console lines (diskimage-builder's DIB_NO_TIMESTAMP); ``console_level``, when
    given, is the console's level (``-q``/``-v``), whatever ``quiet`` and ``debug`` say."""
    root = logging.getLogger("dibpy")
    for h in list(root.handlers):
        root.removeHandler(h)
    level = logging.DEBUG if debug else logging.INFO
    root.setLevel(logging.DEBUG)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(_Formatter(timestamps))
    stream.setLevel(
        console_level if console_level is not None else logging.WARNING if quiet else level
    )
    root.addHandler(stream)
    if logfile:
        try:
            fh = logging.FileHandler(logfile)
        except OSError as e:
            from dibpy.errors import ConfigError

            raise ConfigError(f"--logfile {logfile}: cannot write it: {e.strerror}") from None
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        fh.setLevel(level)
        root.addHandler(fh)
    root.propagate = False
