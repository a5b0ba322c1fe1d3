"""A leak check scoped to the test's own files, so parallel builds elsewhere on the
machine (other tests, other people) cannot make it fail or hide a leak of ours."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _loops_under(root: Path) -> set[str]:
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--raw", "-O", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found = set()
    for line in out.splitlines():
        name, _, back = line.partition(" ")
        back = back.replace("\\x20", " ").removesuffix(" (deleted)")
        if back.startswith(str(root)):
            found.add(f"{name} ({back})")
    return found


def _mounts_under(root: Path) -> set[str]:
    with open("/proc/mounts") as f:
        return {line.split()[1] for line in f if line.split()[1].startswith(str(root))}


@pytest.fixture
def no_leaks(tmp_path: Path) -> Iterator[None]:
    """Fail the test if a loop device over its files or a mount under it is left."""
    yield
    loops, mounts = _loops_under(tmp_path), _mounts_under(tmp_path)
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    for dev in loops:
        subprocess.run(["losetup", "-d", dev.split()[0]], check=False)
    assert not loops, f"loop devices leaked: {sorted(loops)}"
    assert not mounts, f"mounts leaked: {sorted(mounts)}"
