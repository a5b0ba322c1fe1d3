"""Acquiring and releasing the host resources the block-device layer makes.

Every resource (a loop device, the partitions ``partx`` added, a mount, an ESP staging
directory, an active volume group) is described by a small JSON-able record, a *journal
entry*, written to the state file the moment the resource exists (see
:mod:`dibpy.blockdev.state`).  Releasing is a function of that record alone, so the
process that releases need not be the one that acquired: ``dib-block-device cleanup``
can undo what a killed ``create`` left.

Releasing is idempotent and waits for the kernel: a loop device counts as released
only when ``losetup -a`` no longer lists it.  Loop devices themselves are attached and
detached by :mod:`dibpy.loopdev`, mounts unmounted by :mod:`dibpy.mounts`; this module
only journals and releases them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dibpy import loopdev, mounts, run
from dibpy.errors import CommandError, DibpyError
from dibpy.log import LOG
from dibpy.mounts import SETTLE_TIMEOUT, backoff

Entry = dict[str, Any]
Releaser = Callable[[Entry], None]

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


# -- loop devices -----------------------------------------------------------------------


@releaser("loop")
def _release_loop(entry: Entry) -> None:
    loopdev.detach_loop(entry["device"], entry.get("file"))


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
    if loopdev.loop_attached(device, entry.get("file")):
        partx_delete(device)


# -- mounts ----------------------------------------------------------------------------


@releaser("mount")
def _release_mount(entry: Entry) -> None:
    umount(entry["path"])


def umount(path: str | Path) -> None:
    """Sync, trim, unmount, retrying while busy for up to SETTLE_TIMEOUT (nothing is
    killed: the block device may be used outside a build)."""
    mounts.umount(path, tries=None, timeout=SETTLE_TIMEOUT, trim=True, kill_busy=False)


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
