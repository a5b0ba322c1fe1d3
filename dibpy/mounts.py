"""Mounting and unmounting, as resources with an owner.

Every mount made here is pushed onto the caller's ExitStack at once.  Unmounting kills
processes still running with their root (or cwd) inside the tree first, then retries with
a growing delay; a mount that will not go is a logged error, never a silent lazy unmount
that leaves a build's filesystem alive behind the user's back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dibpy import run
from dibpy.errors import CommandError, DibpyError

LOG = logging.getLogger("dibpy")


def is_mounted(path: Path) -> bool:
    p = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(_unescape(line.split()[1]) == p for line in f)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    p = os.path.realpath(path)
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = _unescape(line.split()[1])
            if mp == p or mp.startswith(p.rstrip("/") + "/"):
                out.append(mp)
    return sorted(out, key=lambda m: (m.count("/"), m), reverse=True)


def _unescape(s: str) -> str:
    return (
        s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
    )


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


def mount(args: Sequence[str], target: Path, stack: contextlib.ExitStack, what: str = "") -> Path:
    """``mount ARGS TARGET`` and push its unmount onto ``stack`` (see push_cleanup)."""
    target.mkdir(parents=True, exist_ok=True)
    run.run(["mount", *args, str(target)])
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


def umount(target: Path, what: str = "", tries: int = 8) -> None:
    """Unmount ``target`` (no-op if not mounted), killing processes that keep it busy;
    mounts below it (a hook's) go first, since they would keep it busy."""
    if not is_mounted(target):
        return
    real = os.path.realpath(target)
    for child in mounts_under(target):
        if child != real:
            LOG.info("unmounting %s first: it is mounted inside %s", child, what or target)
            umount(Path(child), child, tries)
    delay = 0.1
    for attempt in range(tries):
        try:
            run.run(["umount", str(target)], quiet=attempt > 0)
            return
        except CommandError as e:
            if not is_mounted(target):
                return
            if attempt == 0 or "busy" in e.output_tail:
                kill_processes_in(target)
            if attempt == tries - 1:
                raise DibpyError(
                    f"cannot unmount {what or target}: {e.output_tail.strip()}",
                    hint="something still uses it; see `fuser -vm " + str(target) + "`",
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def mount_ro_remount(target: Path) -> None:
    """Make an existing bind mount read-only (its unmount is already on a stack)."""
    run.run(["mount", "-o", "remount,bind,ro", str(target)])
