"""Mounting and unmounting, as resources with an owner; the one reader of the mount table.

Every mount made with :func:`mount` is pushed onto the caller's ExitStack at once; the
block-device layer, which journals its mounts instead, makes them with :func:`mount_only`.
Unmounting (:func:`umount`) unmounts what is mounted below the target first, then retries
with a growing delay, killing processes still running with their root (or cwd) inside the
tree unless told not to; a mount that will not go is an error, never a silent lazy
unmount that leaves a build's filesystem alive behind the user's back.

The mount table is read from ``/proc/self/mountinfo`` (:func:`parse_mountinfo`), whose
mount points escape space, tab, newline and backslash as octal (``\\040``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from dibpy import run
from dibpy.errors import CommandError, DibpyError

LOG = logging.getLogger("dibpy")

MOUNTINFO = "/proc/self/mountinfo"

#: how long the block-device layer waits for the kernel to let go of a device, in seconds
SETTLE_TIMEOUT = float(os.environ.get("DIBPY_BLOCKDEV_SETTLE_TIMEOUT", "30"))


def backoff(
    timeout: float | None = SETTLE_TIMEOUT, tries: int | None = None, first: float = 0.05
) -> Iterator[int]:
    """Yield attempt numbers 0, 1, ..., sleeping ``first``, twice that, ... (capped at 2s)
    in between, until ``timeout`` seconds have passed or ``tries`` attempts were made
    (whichever comes first; at least one attempt)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = first
    attempt = 0
    while True:
        yield attempt
        attempt += 1
        if tries is not None and attempt >= tries:
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


# -- the mount table ----------------------------------------------------------------------


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo`` (the fields dibpy uses), unescaped."""

    mount_id: int
    parent_id: int
    mount_point: str
    fstype: str
    source: str


_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes in a mount table field (``\\040`` is a space)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The entries of a ``mountinfo`` text, in the kernel's order (a mount after the one
    it is mounted on).  Lines that do not parse are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            entries.append(
                MountEntry(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    mount_point=unescape(fields[4]),
                    fstype=unescape(fields[sep + 1]),
                    source=unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
                )
            )
        except (ValueError, IndexError):
            continue
    return entries


def mount_table() -> list[MountEntry]:
    with open(MOUNTINFO) as f:
        return parse_mountinfo(f.read())


def is_mounted(path: str | Path) -> bool:
    p = os.path.realpath(path)
    return any(e.mount_point == p for e in mount_table())


def under(entries: Iterable[MountEntry], path: str | Path) -> list[str]:
    """Mount points of ``entries`` at or below ``path`` (taken as it is), deepest first;
    of mounts at the same depth, the later mounted first, so a mount stacked on another
    at the same point comes before it: the order to unmount them in."""
    p = str(path)
    prefix = p.rstrip("/") + "/"
    found = [
        e.mount_point for e in entries if e.mount_point == p or e.mount_point.startswith(prefix)
    ]
    found.reverse()
    return sorted(found, key=lambda m: -m.rstrip("/").count("/"))


def mounts_under(path: str | Path) -> list[str]:
    """Mount points at or below ``path`` now, deepest first (see :func:`under`)."""
    return under(mount_table(), os.path.realpath(path))


def has_mounts_below(path: str | Path) -> bool:
    """Whether anything is mounted strictly below ``path`` (``path`` itself not counted)."""
    real = os.path.realpath(path)
    return any(mp != real for mp in mounts_under(real))


def processes_using(root: Path) -> list[int]:
    """PIDs whose root directory or cwd is ``root`` or below it (chroot leftovers)."""
    r = os.path.realpath(root).rstrip("/")
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for link in ("root", "cwd"):
            try:
                target = os.readlink(f"/proc/{entry}/{link}")
            except OSError:
                continue
            if target == r or target.startswith(r + "/"):
                pids.append(int(entry))
                break
    return pids


def kill_processes_in(root: Path) -> list[int]:
    """Terminate (then kill) every process living in ``root``; returns their pids."""
    pids = processes_using(root)
    if not pids:
        return []
    LOG.warning("stopping %d process(es) still running in %s: %s", len(pids), root, pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if not [p for p in pids if os.path.exists(f"/proc/{p}")]:
                return pids
            time.sleep(0.1)
    return pids


def push_cleanup(
    stack: contextlib.ExitStack, fn: Callable[..., object], *args: Any, what: str = ""
) -> None:
    """Push ``fn(*args)`` onto ``stack`` as a cleanup that never hides the error that made
    the stack unwind: if both fail, the cleanup's failure is logged and the original error
    goes on.  A cleanup failing after a success is the error (a leak is not success)."""

    def _exit(
        exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            fn(*args)
        except Exception as e:
            if exc is None:
                raise
            LOG.error(
                "cleanup failed%s: %s (the error that stopped the build follows)",
                f" ({what})" if what else "",
                e,
            )
        return False

    stack.push(_exit)


def mount_only(args: Sequence[str], target: Path) -> Path:
    """``mount ARGS TARGET`` (making TARGET): for a caller that records the mount itself
    (the block-device journal); everyone else uses :func:`mount`."""
    target.mkdir(parents=True, exist_ok=True)
    run.run(["mount", *args, str(target)])
    return target


def mount(args: Sequence[str], target: Path, stack: contextlib.ExitStack, what: str = "") -> Path:
    """``mount ARGS TARGET`` and push its unmount onto ``stack`` (see push_cleanup)."""
    mount_only(args, target)
    push_cleanup(stack, umount, target, what or str(target), what=f"unmounting {what or target}")
    return target


def unmount_left_behind(root: Path, what: str, keep: Iterable[str] = ()) -> list[str]:
    """Unmount everything mounted at or below ``root`` but ``keep``, deepest first.

    For mounts a hook made and did not undo (diskimage-builder's elements bind-mount
    caches into the tree and rely on the builder to unmount them).  Returns what it
    unmounted; one that will not go is logged, and the rest are still tried.
    """
    # root itself is its owner's (the build tmpfs, the image's root mount)
    kept = {*keep, os.path.realpath(root)}
    done = []
    for mp in mounts_under(root):
        if mp in kept:
            continue
        LOG.info("unmounting %s, left mounted in %s by a hook", mp, what)
        try:
            umount(Path(mp), f"{mp} (left by a hook)")
            done.append(mp)
        except DibpyError as e:
            LOG.error("%s", e)
    return done


def umount(
    target: str | Path,
    what: str = "",
    tries: int | None = 8,
    *,
    timeout: float | None = None,
    trim: bool = False,
    kill_busy: bool = True,
) -> None:
    """Unmount ``target`` (no-op if not mounted); mounts below it (a hook's) go first,
    since they would keep it busy.

    Retries with a growing delay for ``tries`` attempts or ``timeout`` seconds; with
    ``kill_busy`` the processes that keep it busy are killed first (the build's chroot
    leftovers).  ``trim`` syncs and fstrims first, so a sparse image stays small (the
    block-device layer's mounts of the image's filesystems).
    """
    target = Path(target)
    if not is_mounted(target):
        return
    real = os.path.realpath(target)
    for child in mounts_under(target):
        if child != real:
            LOG.info("unmounting %s first: it is mounted inside %s", child, what or target)
            umount(child, child, tries, timeout=timeout, trim=trim, kill_busy=kill_busy)
    if trim:
        # this filesystem only (syncfs): a global sync would also wait for every other
        # disk's writeback, such as the tree cache's layers just written beside the cache
        run.run(["sync", "-f", str(target)], check=False)
        # not every filesystem supports it
        run.run(["fstrim", str(target)], check=False)
    last = ""
    for attempt in backoff(timeout, tries, first=0.1 if kill_busy else 0.05):
        try:
            run.run(["umount", str(target)], quiet=attempt > 0)
            return
        except CommandError as e:
            last = e.output_tail.strip()
            if not is_mounted(target):
                return
            if kill_busy and (attempt == 0 or "busy" in e.output_tail):
                kill_processes_in(target)
    if not is_mounted(target):
        return
    raise DibpyError(
        f"cannot unmount {what or target}: {last}",
        hint="something still uses it; see `fuser -vm " + str(target) + "`",
    )


def mount_ro_remount(target: Path) -> None:
    """Make an existing bind mount read-only (its unmount is already on a stack)."""
    run.run(["mount", "-o", "remount,bind,ro", str(target)])
