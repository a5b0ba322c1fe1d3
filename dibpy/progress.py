"""Progress display for long steps: one status line on a terminal, silence elsewhere.

A long step is usually an external program (qemu-img, tar, mksquashfs) run through
:mod:`dibpy.run`, which captures its output, so the programs' own progress bars are of no
use.  Instead :func:`watch` measures how far the program has got by reading how many bytes
it has read so far (``rchar`` in ``/proc/PID/io`` of the child of this process whose
command line names the step's unique path) against the bytes the step has to read.

Several steps may run at once (outputs are written in parallel): they share one status
line, drawn by one thread that exists while at least one step is watched.

The display is on only when stderr is a terminal and ``CI`` is not set; ``DIBPY_PROGRESS=0``
turns it off and ``DIBPY_PROGRESS=1`` forces it on; ``DIBPY_PROGRESS=json`` (the event
stream, :mod:`dibpy.events`) and ``--progress=off|json`` turn it off.  Logs never see it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

Probe = Callable[[], int | None]


_forced: bool | None = None


def set_enabled(on: bool | None) -> None:
    """The command line's say (``--progress``): wins over DIBPY_PROGRESS; None: auto."""
    global _forced
    _forced = on


def enabled(stream: TextIO | None = None) -> bool:
    if _forced is not None:
        return _forced
    forced = os.environ.get("DIBPY_PROGRESS", "")
    if forced in ("0", "no", "off", "json"):
        return False
    if forced in ("1", "yes", "on"):
        return True
    if os.environ.get("CI"):
        return False
    s = stream if stream is not None else sys.stderr
    try:
        return s.isatty()
    except (AttributeError, ValueError):
        return False


def _children() -> list[int]:
    """Pids of this process's direct children."""
    me = os.getpid()
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may itself hold spaces or ')'
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 1 and rest[1] == str(me):
            out.append(int(entry.name))
    return out


def child_reading(match: str) -> Probe:
    """A probe giving the bytes read so far by our child whose argv contains ``match``."""
    cache: dict[str, int] = {}

    def probe() -> int | None:
        pid = cache.get("pid")
        if pid is None:
            for p in _children():
                try:
                    argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if any(match.encode() in a for a in argv):
                    cache["pid"] = pid = p
                    break
            else:
                return None
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    return int(line.split()[1])
        except OSError:
            cache.pop("pid", None)
        return None

    return probe


def file_growing(path: Path) -> Probe:
    """A probe giving the current size of a file being written."""

    def probe() -> int | None:
        try:
            return path.stat().st_size
        except OSError:
            return None

    return probe


@dataclass
class _Task:
    label: str
    total: int
    probe: Probe
    started: float = field(default_factory=time.monotonic)
    last: int = 0

    def fraction(self) -> float | None:
        v = self.probe()
        if v is not None:
            self.last = max(self.last, v)
        if self.total <= 0:
            return None
        # a program reads a little more than the data (headers, metadata): never claim 100%
        return min(self.last / self.total, 0.99)


class _Display:
    """The one status line; owns the drawing thread while any task is watched."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: list[_Task] = []
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.stream: TextIO = sys.stderr
        self.width = 0

    def add(self, task: _Task, stream: TextIO) -> None:
        with self.lock:
            self.tasks.append(task)
            self.stream = stream
            if self.thread is None:
                self.stop.clear()
                self.thread = threading.Thread(target=self._loop, daemon=True)
                self.thread.start()

    def remove(self, task: _Task) -> None:
        thread = None
        with self.lock:
            self.tasks.remove(task)
            if not self.tasks and self.thread is not None:
                thread, self.thread = self.thread, None
                self.stop.set()
        if thread is not None:
            thread.join()
            self._write("")

    def _line(self) -> str:
        parts = []
        for t in list(self.tasks):
            f = t.fraction()
            secs = int(time.monotonic() - t.started)
            pct = f"{f * 100:3.0f}%" if f is not None else "..."
            parts.append(f"{t.label} {pct} {secs // 60}:{secs % 60:02d}")
        return "  |  ".join(parts)

    def _write(self, line: str) -> None:
        pad = max(0, self.width - len(line))
        with contextlib.suppress(OSError, ValueError):
            self.stream.write("\r" + line + " " * pad + ("\r" if not line else ""))
            self.stream.flush()
        self.width = len(line)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            with self.lock:
                line = self._line()
            self._write(line)


_DISPLAY = _Display()


@contextlib.contextmanager
def watch(label: str, total: int, probe: Probe, *, stream: TextIO | None = None) -> Iterator[None]:
    """Show ``label``'s progress (``probe()`` of ``total``) while the block runs."""
    s = stream if stream is not None else sys.stderr
    if not enabled(s):
        yield
        return
    task = _Task(label, total, probe)
    _DISPLAY.add(task, s)
    try:
        yield
    finally:
        _DISPLAY.remove(task)


def allocated_bytes(path: Path) -> int:
    """Bytes a (sparse) file really holds: what a reader of its data has to read."""
    try:
        st = path.stat()
    except OSError:
        return 0
    return min(st.st_size, st.st_blocks * 512)
