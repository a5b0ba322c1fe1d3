"""A cleanup that fails while a build unwinds logs its own failure and lets the error that
caused the unwind through; on a build that went well, the failing cleanup is the error."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from pathlib import Path

import pytest

from dibpy import mounts
from dibpy.errors import DibpyError, HookError

FAILING_UMOUNT = '#!/bin/sh\necho "umount: $1: target is busy." >&2\nexit 32\n'


@pytest.fixture
def busy_umount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A real tmpfs at tmp/mnt, and an `umount` on PATH that always says it is busy."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "umount").write_text(FAILING_UMOUNT)
    (fake / "umount").chmod(0o755)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    monkeypatch.setenv("PATH", f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin")
    # the retries' back-off is not what is tested here
    monkeypatch.setattr(mounts.time, "sleep", lambda _s: None)
    yield mnt
    subprocess.run(["/usr/bin/umount", str(mnt)], check=False)


def test_a_failing_unmount_does_not_hide_the_hook_error(
    busy_umount: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(HookError, match="the real cause"), contextlib.ExitStack() as stack:
        mounts.mount(["-t", "tmpfs", "tmpfs"], busy_umount, stack, "the test tmpfs")
        raise HookError("hook install.d/10-x of element y: the real cause")
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("cannot unmount the test tmpfs" in m for m in logged), logged


def test_a_failing_unmount_after_success_is_the_error(busy_umount: Path) -> None:
    with (
        pytest.raises(DibpyError, match="cannot unmount the test tmpfs"),
        contextlib.ExitStack() as stack,
    ):
        mounts.mount(["-t", "tmpfs", "tmpfs"], busy_umount, stack, "the test tmpfs")
