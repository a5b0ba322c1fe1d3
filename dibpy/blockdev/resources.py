"""Acquiring and releasing the host resources the block-device layer makes.

Every resource (a loop device, the partitions ``partx`` added, a mount, an ESP staging
directory, an active volume group) is described by a small JSON-able record, a *journal
entry*, written to the state file the moment the resource exists (see
:mod:`dibpy.blockdev.state`).  Releasing is a function of that record alone, so the
process that releases need not be the one that acquired: ``dib-block-device cleanup``
can undo what a killed ``create`` left.

Releasing is idempotent and waits for the kernel: a loop device counts as released
only when ``losetup -a`` no longer lists it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dibpy import run
from dibpy.errors import CommandError, DibpyError
from dibpy.log import LOG

Entry = dict[str, Any]
Releaser = Callable[[Entry], None]

#: how long to wait for the kernel to let go of a device, in seconds
SETTLE_TIMEOUT = float(os.environ.get("DIBPY_BLOCKDEV_SETTLE_TIMEOUT", "30"))

_RELEASERS: dict[str, Releaser] = {}


def releaser(kind: str) -> Callable[[Releaser], Releaser]:
    """Register the function that releases journal entries of ``kind``.

    Third-party plugins register theirs at import time for their own kinds.
    """

    def _register(fn: Releaser) -> Releaser:
        _RELEASERS[kind] = fn
        return fn

    return _register


def release(entry: Entry) -> None:
    fn = _RELEASERS.get(entry["kind"])
    if fn is None:
        raise DibpyError(
            f"do not know how to release a {entry['kind']!r} resource",
            hint="the plugin that made it must be installed to tear it down",
        )
    fn(entry)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT/SIGHUP while a resource is made and journalled.

    A signal arriving between ``losetup`` returning and the journal being written would
    leak the device; blocked signals are delivered as soon as the block ends.
    """
    sigs = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def backoff(timeout: float = SETTLE_TIMEOUT) -> Iterator[int]:
    """Yield attempt numbers, sleeping 0.05s, 0.1s, ... (capped at 2s) in between."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    attempt = 0
    while True:
        yield attempt
        attempt += 1
        if time.monotonic() >= deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


# -- loop devices -----------------------------------------------------------------------


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


def loops_backed_by(path: Path) -> list[str]:
    target = os.path.realpath(path)
    return sorted(
        dev
        for dev, back in loop_list().items()
        if back and os.path.realpath(back.removesuffix(" (deleted)")) == target
    )


def attach_loop(
    backing: Path | str,
    *,
    sector_size: int = 512,
    offset: int | None = None,
    sizelimit: int | None = None,
) -> str:
    argv: list[str] = ["losetup", "--show", "-f"]
    if sector_size != 512:
        argv += ["--sector-size", str(sector_size)]
    if offset is not None:
        argv += ["-o", str(offset)]
    if sizelimit is not None:
        argv += ["--sizelimit", str(sizelimit)]
    argv.append(str(backing))
    return run.output(argv)


def _loop_attached(device: str, backing: str | None) -> bool:
    back = loop_list().get(device)
    if back is None:
        return False
    if backing is None:
        return True
    return os.path.realpath(back.removesuffix(" (deleted)")) == os.path.realpath(backing)


def detach_loop(device: str, backing: str | None = None) -> None:
    """``losetup -d`` and wait until the kernel no longer lists the device."""
    if not _loop_attached(device, backing):
        return
    last = ""
    for _ in backoff():
        if not _loop_attached(device, backing):
            return
        r = run.run(["losetup", "-d", device], check=False)
        last = r.stderr.strip()
        if not _loop_attached(device, backing):
            return
    raise DibpyError(
        f"loop device {device} is still attached after {SETTLE_TIMEOUT:.0f}s"
        + (f": {last}" if last else ""),
        hint="something still holds it open; see `losetup -a` and `fuser -vm " + device + "`",
    )


@releaser("loop")
def _release_loop(entry: Entry) -> None:
    detach_loop(entry["device"], entry.get("file"))


# -- partitions of a loop device ----------------------------------------------------------


def sys_partitions(device: str) -> list[str]:
    """Partition device names the kernel knows for ``device`` (``loop0p1``, ...)."""
    base = os.path.basename(device)
    d = Path("/sys/block") / base
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.name.startswith(base + "p"))


def partition_node(device: str, number: int) -> str:
    base = os.path.basename(device)
    sep = "p" if base[-1:].isdigit() else ""
    return f"/dev/{base}{sep}{number}"


def partx_add(device: str) -> bool:
    """Ask the kernel for the partitions of ``device``; False if that failed."""
    r = run.run(["partx", "-a", device], check=False)
    if r.returncode != 0:
        LOG.warning("partx -a %s failed: %s", device, r.stderr.strip() or r.stdout.strip())
        return False
    return True


def wait_for_node(path: str, timeout: float = 2.0) -> bool:
    return any(os.path.exists(path) for _ in backoff(timeout))


def partx_delete(device: str) -> None:
    if not sys_partitions(device):
        return
    last = ""
    for _ in backoff():
        r = run.run(["partx", "-d", device], check=False)
        last = r.stderr.strip()
        if not sys_partitions(device):
            return
    raise DibpyError(
        f"the kernel still has partitions of {device}: {', '.join(sys_partitions(device))}"
        + (f" ({last})" if last else ""),
        hint="a partition is still mounted or open; see /proc/mounts",
    )


@releaser("partx")
def _release_partx(entry: Entry) -> None:
    device = entry["device"]
    # the loop device may already be gone (or reused by someone else: check the file)
    if _loop_attached(device, entry.get("file")):
        partx_delete(device)


# -- mounts ----------------------------------------------------------------------------


def mounted(path: str | Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and _unescape(fields[1]) == target:
                return True
    return False


def mounts_under(base: str | Path) -> list[str]:
    """Mount points at or below ``base``, deepest first."""
    root = os.path.realpath(base)
    found = []
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1:
                mp = _unescape(fields[1])
                if mp == root or mp.startswith(root.rstrip("/") + "/"):
                    found.append(mp)
    return sorted(found, key=lambda p: (-p.count("/"), p))


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def umount(path: str) -> None:
    """Flush, trim, unmount (retrying with backoff while busy)."""
    if not mounted(path):
        return
    run.run(["sync"], check=False)
    # trimming lets the sparse image stay small; not every filesystem supports it
    run.run(["fstrim", path], check=False)
    last = ""
    for _ in backoff():
        r = run.run(["umount", path], check=False)
        last = r.stderr.strip()
        if not mounted(path):
            return
    raise DibpyError(
        f"cannot unmount {path}: {last}",
        hint=f"a process still uses it; see `fuser -vm {path}`",
    )


@releaser("mount")
def _release_mount(entry: Entry) -> None:
    umount(entry["path"])


# -- vfat written with mtools ------------------------------------------------------------


def mtools_env() -> dict[str, str]:
    return {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


def stage_copy_in(device: str, staging: Path) -> None:
    """Copy a staged directory's content into a FAT filesystem, then empty the stage."""
    if not staging.is_dir():
        return
    entries = sorted(staging.iterdir())
    if entries:
        run.run(
            ["mcopy", "-s", "-p", "-o", "-n", "-Q", "-i", device, *entries, "::/"],
            env=mtools_env(),
            hint=f"copying the staged content of {staging} into the FAT filesystem "
            "failed; is it larger than the partition?",
        )
    for p in entries:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


@releaser("vfat-stage")
def _release_stage(entry: Entry) -> None:
    staging = Path(entry["path"])
    device = entry["device"]
    if not staging.is_dir() or not any(staging.iterdir()):
        return
    if not os.path.exists(device):
        raise DibpyError(
            f"cannot copy {staging} into its FAT filesystem: {device} is gone",
            hint="the staged files are left in place",
        )
    stage_copy_in(device, staging)


# -- LVM -------------------------------------------------------------------------------

LVM_ENV = {"DM_DISABLE_UDEV": "1", "LVM_SUPPRESS_FD_WARNINGS": "1"}


@releaser("lvm-vg")
def _release_vg(entry: Entry) -> None:
    vg = entry["vg"]
    r = run.run(["vgs", "--noheadings", "-o", "vg_name", vg], env=LVM_ENV, check=False)
    if r.returncode != 0:
        return
    try:
        run.run(["vgchange", "-an", vg], env=LVM_ENV)
    except CommandError:
        for _ in backoff(10):
            if run.run(["vgchange", "-an", vg], env=LVM_ENV, check=False).returncode == 0:
                return
        raise


def device_mapper_problem() -> str | None:
    """None if device-mapper is usable here, else why not."""
    if not os.path.exists("/dev/mapper/control"):
        return "device-mapper is not available here (/dev/mapper/control does not exist)"
    if run.which("dmsetup") is None:
        return "device-mapper is not available here (dmsetup is not installed)"
    r = run.run(["dmsetup", "version"], check=False, quiet=True)
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["dmsetup version failed"])[0]
        return f"device-mapper does not work here: {first}"
    return None
