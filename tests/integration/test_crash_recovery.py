"""Crash recovery: after ``kill -KILL`` of the build process itself, ``dibpy cleanup`` (and
the next build, by itself) removes what it left, and never touches a live build."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dibpy.mounts import processes_using
from tests.conftest import chroot_works, loops_under, mounts_under
from tests.integration.test_fault_matrix import _setup

BIN = Path(sys.executable).parent
DIC = [str(BIN / "disk-image-create")]
DIBPY = [str(BIN / "dibpy")]


@pytest.fixture(autouse=True)
def _need_tools() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)
    if not Path(DIC[0]).exists():
        pytest.skip("needs the venv's console scripts")


def _env(tmp_path: Path, hooks: dict[str, str]) -> dict[str, str]:
    return _setup(tmp_path, hooks, name="stuck", about="waits in a hook")


def _start_until_ready(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*DIC, "-n", "-o", str(tmp_path / "out" / "img"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if "HOOK-READY" in line:
            return proc
    proc.kill()
    raise AssertionError(f"the hook never got ready:\n{seen}")


def _kill_build(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _nothing_left(tmp_path: Path) -> None:
    assert not loops_under(tmp_path), loops_under(tmp_path)
    assert not mounts_under(tmp_path), mounts_under(tmp_path)
    assert processes_using(tmp_path / "tmp") == []
    assert not [p.name for p in (tmp_path / "tmp").iterdir()]


STUCK = "echo HOOK-READY\nsleep 300\n"


def test_dibpy_cleanup_after_sigkill_in_the_chroot(tmp_path: Path, no_leaks: None) -> None:
    env = _env(tmp_path, {"install.d/50-stuck": STUCK})
    proc = _start_until_ready(tmp_path, env, "tiny-os", "stuck", "no-final-image")
    _kill_build(proc)
    assert mounts_under(tmp_path), "expected the dead build's chroot mounts"
    assert processes_using(tmp_path / "tmp"), "expected the dead build's hook still running"
    r = subprocess.run(
        [*DIBPY, "cleanup", "--tmp-dir", str(tmp_path / "tmp")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cleaned up" in r.stdout
    _nothing_left(tmp_path)


def test_the_next_build_cleans_up_after_sigkill_with_the_image_mounted(
    tmp_path: Path, no_leaks: None
) -> None:
    env = _env(tmp_path, {"finalise.d/50-stuck": STUCK})
    proc = _start_until_ready(tmp_path, env, "-t", "raw", "tiny-os", "stuck")
    _kill_build(proc)
    assert loops_under(tmp_path), "expected the dead build's loop device"
    # the same TMP_DIR, another image: the dead build's leftovers go first
    r = subprocess.run(
        [*DIC, "-n", "-t", "raw", "-o", str(tmp_path / "out" / "next"), "tiny-os"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cleaning up after a build that died" in r.stderr, r.stderr
    _nothing_left(tmp_path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["next.d", "next.raw"]


def test_cleanup_never_touches_a_live_build(tmp_path: Path, no_leaks: None) -> None:
    flag = tmp_path / "go-on"
    env = _env(
        tmp_path,
        {"root.d/50-wait": f"echo HOOK-READY\nwhile [ ! -e {flag} ]; do sleep 0.1; done\n"},
    )
    proc = _start_until_ready(tmp_path, env, "tiny-os", "stuck", "no-final-image")
    try:
        build_dirs = [d for d in (tmp_path / "tmp").glob("dib_build.*") if d.is_dir()]
        r = subprocess.run(
            [*DIBPY, "cleanup", "--tmp-dir", str(tmp_path / "tmp")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "nothing to clean up" in r.stdout, r.stdout
        assert len(build_dirs) == 1 and build_dirs[0].is_dir()
        owner_note = build_dirs[0].with_name(build_dirs[0].name + ".owner")
        assert owner_note.is_file(), "the live build's note was removed"
    finally:
        flag.touch()
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, rest
    _nothing_left(tmp_path)
