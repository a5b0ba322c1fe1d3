"""The machine-readable event stream of a build (``--progress=json``, ``DIBPY_PROGRESS=json``).

One JSON object per line, each with ``event`` (its kind) and ``time`` (seconds since the
epoch), written as it happens to ``--progress-file PATH`` (a file, a FIFO or
``/dev/fd/N``) or, by default, to standard error between the log lines (every event is
one line starting with ``{``).  The kinds and their fields are the JSON schema
``dibpy/schemas/events.json``; doc/events.md describes them.

One build runs per process, so the sink is process-wide: :func:`emit` is a no-op until
:func:`session` has opened one, and safe from the threads that write outputs in parallel.
The session owns the file it opened and closes it when it ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from dibpy.errors import ConfigError

SCHEMA = Path(__file__).parent / "schemas" / "events.json"
ENV = "DIBPY_PROGRESS"
MODES = ("auto", "off", "json")


class EventSink:
    """Writes events to ``stream``, one JSON line each, flushed at once (a CI system
    reads them while the build runs)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3)}
        record.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(record, default=str)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                # a reader that went away must not fail the build
                pass


_sink: EventSink | None = None


def enabled() -> bool:
    return _sink is not None


def emit(event: str, **fields: Any) -> None:
    """Send one event to the session's sink, if there is one."""
    sink = _sink
    if sink is not None:
        sink.emit(event, **fields)


def mode_from(option: str | None, environ: Mapping[str, str]) -> str:
    """``--progress`` wins over DIBPY_PROGRESS; its 0/1 (the terminal status line) mean
    off and auto here."""
    if option is not None:
        return option
    value = environ.get(ENV, "").strip().lower()
    return "json" if value == "json" else "auto"


@contextlib.contextmanager
def session(path: str | None) -> Iterator[EventSink]:
    """Open the stream (``path``, else standard error) for the rest of the process's
    build; the file is closed and the sink removed at the end."""
    global _sink
    if path:
        try:
            stream: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise ConfigError(
                f"--progress-file {path}: cannot write it: {e.strerror}",
                hint="give a writable file, a FIFO or /dev/fd/N",
            ) from None
    else:
        stream = sys.stderr
    sink = EventSink(stream)
    previous, _sink = _sink, sink
    try:
        yield sink
    finally:
        _sink = previous
        if stream is not sys.stderr:
            stream.close()


@contextlib.contextmanager
def build_events(elements: Sequence[str], argv: Sequence[str]) -> Iterator[dict[str, Any]]:
    """``build-start`` now, ``build-end`` when the block ends: ``ok`` with the outputs the
    block put in the yielded dict's ``outputs``, or ``error`` (``interrupted``) with the
    error's text and hint, re-raised."""
    from dibpy import __version__
    from dibpy.errors import DibpyError

    start = time.monotonic()
    emit(
        "build-start",
        version=__version__,
        elements=list(elements),
        argv=list(argv),
        pid=os.getpid(),
    )
    result: dict[str, Any] = {"outputs": []}
    try:
        yield result
    except DibpyError as e:
        emit(
            "build-end",
            result="error",
            seconds=round(time.monotonic() - start, 3),
            error=e.message,
            hint=e.hint,
            exit_status=e.exit_code,
            outputs=[],
        )
        raise
    except KeyboardInterrupt:
        emit("build-end", result="interrupted", seconds=round(time.monotonic() - start, 3))
        raise
    except BaseException as e:
        emit(
            "build-end",
            result="error",
            seconds=round(time.monotonic() - start, 3),
            error=f"{type(e).__name__}: {e}",
            outputs=[],
        )
        raise
    emit(
        "build-end",
        result="ok",
        seconds=round(time.monotonic() - start, 3),
        outputs=[str(p) for p in result["outputs"]],
    )


def output_written(path: Path, output_type: str | None = None) -> None:
    """``output`` for a written file: its size and SHA-256 (read only when events are on)."""
    if not enabled():
        return
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        emit(
            "output",
            path=str(path),
            type=output_type,
            size=path.stat().st_size,
            sha256=digest.hexdigest(),
        )
    else:
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        emit("output", path=str(path), type=output_type, size=size)


__all__ = [
    "ENV",
    "MODES",
    "SCHEMA",
    "EventSink",
    "build_events",
    "emit",
    "enabled",
    "mode_from",
    "output_written",
    "session",
]
