"""Shared test fixtures: capability probes for the tiers, and leak checks.

Tiers: ``tests/unit`` runs anywhere; ``tests/integration`` needs root and loop devices;
``tests/e2e`` does real builds and boots.  A tier is skipped by probing the capability
(a real loop attach), never by checking the uid.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@functools.cache
def loop_devices_work() -> str | None:
    """None if a loop device can be attached and detached here, else the reason."""
    with tempfile.NamedTemporaryFile(prefix="dibpy-probe-") as f:
        f.truncate(1024 * 1024)
        try:
            dev = subprocess.run(
                ["losetup", "--show", "-f", f.name],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            return "losetup is not installed"
        if dev.returncode != 0:
            return f"cannot attach a loop device: {dev.stderr.strip()}"
        subprocess.run(["losetup", "-d", dev.stdout.strip()], check=False)
    return None


@functools.cache
def chroot_works() -> str | None:
    try:
        r = subprocess.run(["chroot", "/", "true"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "chroot is not installed"
    return None if r.returncode == 0 else f"chroot does not work here: {r.stderr.strip()}"


def require_loop() -> None:
    reason = loop_devices_work()
    if reason:
        pytest.skip(reason)


def our_loops() -> set[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    return {line.split(":", 1)[0] for line in out.splitlines() if line.strip()}


def our_mounts() -> set[str]:
    with open("/proc/mounts") as f:
        return {line.split()[1] for line in f}


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a loop device or a mount behind."""
    loops, mounts = our_loops(), our_mounts()
    yield
    new_loops = our_loops() - loops
    new_mounts = our_mounts() - mounts
    assert not new_loops, f"loop devices leaked: {sorted(new_loops)}"
    assert not new_mounts, f"mounts leaked: {sorted(new_mounts)}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ELEMENTS_PATH or DIB_* from the developer's shell leaks into a test."""
    for k in list(os.environ):
        if k == "ELEMENTS_PATH" or k.startswith("DIB_"):
            monkeypatch.delenv(k)
