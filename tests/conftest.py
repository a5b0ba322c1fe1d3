"""Shared test fixtures: capability probes for the tiers, and leak checks.

Tiers: ``tests/unit`` runs anywhere; ``tests/integration`` needs root and loop devices;
``tests/e2e`` does real builds and boots.  A tier is skipped by probing the capability
(a real loop attach), never by checking the uid.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
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


def loops_under(root: Path) -> set[str]:
    """Loop devices backed by a file under ``root``, as "DEV (FILE)"."""
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


def mounts_under(root: Path) -> set[str]:
    with open("/proc/mounts") as f:
        return {line.split()[1] for line in f if line.split()[1].startswith(str(root))}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    """An HTTP server on 127.0.0.1 (a free port) serving ``root``; stopped on exit.
    Its base URL is :func:`url_of` it."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def url_of(server: http.server.HTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def mirror_unreachable(
    var: str, probe: str, *, what: str = "mirror", names: str = "mirror host"
) -> str | None:
    """Why the mirror a network test needs cannot be used (None: it answers): ``var``
    must name it, and ``probe`` under it must be fetchable."""
    url = os.environ.get(var)
    if not url:
        return f"{what} unreachable: {var} is not set (dibpy names no {names})"
    r = subprocess.run(
        ["curl", "-fsS", "-o", "/dev/null", "--max-time", "20", f"{url.rstrip('/')}/{probe}"],
        capture_output=True,
        text=True,
    )
    return None if r.returncode == 0 else f"{what} unreachable: {r.stderr.strip()}"


#: a fixed identity for the commits tests make in their local git repositories
GIT_ENV = {
    "GIT_AUTHOR_NAME": "dibpy tests",
    "GIT_AUTHOR_EMAIL": "tests@dibpy.invalid",
    "GIT_COMMITTER_NAME": "dibpy tests",
    "GIT_COMMITTER_EMAIL": "tests@dibpy.invalid",
}


def git(repo: Path, *args: str) -> str:
    """``git -C REPO ARGS`` with GIT_ENV's identity; its output, stripped."""
    r = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.strip()


def write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a test file, making its directory, with its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture
def no_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the test if it leaves a loop device or a mount behind.

    Scoped to this test session's temporary directory (tests point TMP_DIR and every image
    there), so builds elsewhere on the machine can neither fail this check nor hide a leak.
    What leaked is released afterwards, so one leak does not fail the following tests too.
    """
    root = tmp_path_factory.getbasetemp()
    before_loops, before_mounts = loops_under(root), mounts_under(root)
    yield
    loops = loops_under(root) - before_loops
    mounts = mounts_under(root) - before_mounts
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    for dev in loops:
        subprocess.run(["losetup", "-d", dev.split()[0]], check=False)
    assert not loops, f"loop devices leaked: {sorted(loops)}"
    assert not mounts, f"mounts leaked: {sorted(mounts)}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ELEMENTS_PATH or DIB_* from the developer's shell leaks into a test."""
    for k in list(os.environ):
        if k == "ELEMENTS_PATH" or k.startswith("DIB_"):
            monkeypatch.delenv(k)


def write_snap_element(els: Path) -> None:
    """The test element ``snap``: its cleanup.d copies the finished tree to $SNAP_OUT."""
    write(els / "snap/README.rst", "Snapshot the finished tree.\n")
    write(
        els / "snap/cleanup.d/99-snap",
        '#!/bin/bash\nset -eu -o pipefail\ncp -a "$TARGET_ROOT" "$SNAP_OUT"\n',
        0o755,
    )


def snapshot_tree(
    root: Path, cache: Path, elements_dir: Path, elements: Sequence[str], **env: str
) -> tuple[Path, str]:
    """Build ``test-debian ELEMENTS`` from ``elements_dir`` (which has ``snap``) with no
    final image and ``--no-cache`` (the hooks must run: the cache dir may be shared
    between runs); returns the copy of the finished tree (``root/snap``) and the log."""
    snap = root / "snap"
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    full.update(
        ELEMENTS_PATH=str(elements_dir),
        TMP_DIR=str(root / "tmp"),
        DIB_IMAGE_CACHE=str(cache),
        SNAP_OUT=str(snap),
        **env,
    )
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "disk-image-create"), "--no-cache",
         "-o", str(root / "out/img"), "test-debian", *elements, "no-final-image", "snap"],
        env=full, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-6000:]
    return snap, r.stdout + r.stderr


def write_test_debian(els: Path) -> None:
    """The test-debian element: a Debian operating system from debootstrap, no kernel."""
    write(els / "test-debian/README.rst", "A Debian tree without a kernel, for tests.\n")
    write(els / "test-debian/element-provides", "operating-system\n")
    write(els / "test-debian/element-deps", "debootstrap\n")
    write(
        els / "test-debian/environment.d/10-test-debian.bash",
        "export DISTRO_NAME=debian\nexport DIB_RELEASE=${DIB_RELEASE:-bookworm}\n",
    )


def process_alive(pid: int) -> bool:
    """Is ``pid`` running?  A zombie is not: once its parent has gone, only PID 1 reaps
    it, and a container's PID 1 may take its time."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
