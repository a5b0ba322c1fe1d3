"""Loop devices: the one place that attaches, lists and detaches them.

Whoever attaches owns the device: the block-device layer journals it (see
:mod:`dibpy.blockdev.resources`), ``dibpy info`` pushes :func:`detach_loop` onto its
ExitStack.  Detaching waits for the kernel: a device counts as released only when
``losetup --list`` no longer shows it.
"""

from __future__ import annotations

import os
from pathlib import Path

from dibpy import run
from dibpy.errors import DibpyError
from dibpy.mounts import SETTLE_TIMEOUT, backoff


def loop_list() -> dict[str, str]:
    """Attached loop devices: device -> backing file (as ``losetup`` names it)."""
    out = run.run(
        ["losetup", "--list", "--noheadings", "--raw", "-O", "NAME,BACK-FILE"], quiet=True
    ).stdout
    result: dict[str, str] = {}
    for line in out.splitlines():
        name, _, back = line.partition(" ")
        if name:
            result[name] = back.strip().replace("\\x20", " ")
    return result


def _backing(back: str) -> str:
    return os.path.realpath(back.removesuffix(" (deleted)"))


def loops_backed_by(path: Path | str) -> list[str]:
    target = os.path.realpath(path)
    return sorted(dev for dev, back in loop_list().items() if back and _backing(back) == target)


def loops_backed_under(directory: Path | str) -> list[str]:
    """Loop devices whose backing file is below ``directory`` (a dead build's)."""
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    return sorted(
        dev for dev, back in loop_list().items() if back and _backing(back).startswith(prefix)
    )


def attach_loop(
    backing: Path | str,
    *,
    sector_size: int = 512,
    offset: int | None = None,
    sizelimit: int | None = None,
    read_only: bool = False,
) -> str:
    """Attach ``backing`` to a free loop device and return its name; the caller owns it."""
    argv: list[str] = ["losetup", "--show", "-f"]
    if read_only:
        argv.append("-r")
    if sector_size != 512:
        argv += ["--sector-size", str(sector_size)]
    if offset is not None:
        argv += ["-o", str(offset)]
    if sizelimit is not None:
        argv += ["--sizelimit", str(sizelimit)]
    argv.append(str(backing))
    return run.output(argv)


def loop_attached(device: str, backing: str | None = None) -> bool:
    """Whether ``device`` is attached (to ``backing``, if given: a reused device is not)."""
    back = loop_list().get(device)
    if back is None:
        return False
    if backing is None:
        return True
    return _backing(back) == os.path.realpath(backing)


def detach_loop(device: str, backing: str | None = None, timeout: float = SETTLE_TIMEOUT) -> None:
    """``losetup -d`` and wait until the kernel no longer lists the device; no-op if it
    is not attached (to ``backing``, if given)."""
    if not loop_attached(device, backing):
        return
    last = ""
    for _ in backoff(timeout):
        if not loop_attached(device, backing):
            return
        r = run.run(["losetup", "-d", device], check=False)
        last = r.stderr.strip()
        if not loop_attached(device, backing):
            return
    raise DibpyError(
        f"loop device {device} is still attached after {timeout:.0f}s"
        + (f": {last}" if last else ""),
        hint="something still holds it open; see `losetup -a` and `fuser -vm " + device + "`",
    )
