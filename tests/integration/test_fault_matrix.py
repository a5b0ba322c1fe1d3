"""The fault matrix: a fault in every phase of an image build, and nothing left behind.

For each phase a tiny-os image build (the host's bash and coreutils: about a second) gets
one hook that fails, is killed by SIGKILL, or sends the build itself SIGTERM, SIGINT or
SIGHUP (from inside the hook, so the signal lands while that phase runs: no timing).
After each: a non-zero exit, exactly one error line naming the cause (the hook and its
element, or the signal), no traceback, and no loop device, mount, process, build
directory or output (partial or not) left.  Beyond the matrix: disk full, leftover
mounts and processes, a failing qemu-img, two builds at once, and a package archive on
127.0.0.1 that stops answering mid-install (refusing connections, or stalling mid-answer),
both from the chroot and from a host-side hook.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dibpy.elements.model import PHASES
from dibpy.mounts import processes_using
from tests.conftest import REPO, chroot_works, loops_under, mounts_under

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [str(Path(sys.executable).parent / "disk-image-create")]
if not Path(DIC[0]).exists():
    DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]


#: fault -> (hook body, what the one error line must say; {hook} is phase/NN-name)
FAULTS = {
    "fails": (
        "echo about to fail\nexit 3\n",
        "hook {hook} of element faulty failed with exit status 3",
    ),
    "sigkill": ("kill -KILL $$\n", "hook {hook} of element faulty was killed by SIGKILL"),
    "sigterm": ("kill -TERM $PPID\nsleep 60\n", "interrupted by signal SIGTERM"),
    "sigint": ("kill -INT $PPID\nsleep 60\n", "interrupted by signal SIGINT"),
    "sighup": ("kill -HUP $PPID\nsleep 60\n", "interrupted by signal SIGHUP"),
}

# every fault in every phase: 50 builds of about a second each
MATRIX = [(p, f) for p in PHASES for f in FAULTS]


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize(("phase", "fault"), MATRIX, ids=[f"{p}-{f}" for p, f in MATRIX])
def test_a_fault_in_a_phase_leaves_nothing(
    phase: str, fault: str, tmp_path: Path, no_leaks: None
) -> None:
    body, expect = FAULTS[fault]
    env = _setup(tmp_path, {f"{phase}/50-fault": body})
    r = subprocess.run(
        [*DIC, "-n", "-t", "raw,qcow2", "-o", str(tmp_path / "out" / "img"), "tiny-os", "faulty"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    text = r.stdout + r.stderr
    assert r.returncode != 0, text
    assert "Traceback" not in text, text
    ours = [ln for ln in text.splitlines() if ln.startswith("disk-image-create: error:")]
    assert len(ours) == 1, text
    assert expect.format(hook=f"{phase}/50-fault") in ours[0], text
    assert _files(tmp_path / "tmp") == set(), "the build directory was left"
    assert _files(tmp_path / "out") == set(), "an output (or NAME.d) was left"
    assert not loops_under(tmp_path) and not mounts_under(tmp_path)
    # every process of the build started in tmp_path (its cwd): none may be left
    assert processes_using(tmp_path) == []


def _setup(
    tmp_path: Path,
    hooks: dict[str, str],
    name: str = "faulty",
    about: str = "a hook that goes wrong",
) -> dict[str, str]:
    """An element NAME of HOOKS beside the fixture OS; the environment to build with."""
    el = tmp_path / "elements" / name
    el.mkdir(parents=True, exist_ok=True)
    (el / "README.rst").write_text(f"{name}: {about}\n")
    for rel, body in hooks.items():
        (el / rel).parent.mkdir(parents=True, exist_ok=True)
        (el / rel).write_text("#!/bin/bash\n" + body)
        (el / rel).chmod(0o755)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    (tmp_path / "out").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=f"{tmp_path / 'elements'}:{FIXTURES}",
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        DIB_NO_CACHE="1",
    )
    return env


def _build(
    tmp_path: Path, env: dict[str, str], *args: str, name: str = "img"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DIC, "-n", "-t", "raw,qcow2", "-o", str(tmp_path / "out" / name), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )


def _nothing_left(tmp_path: Path, outputs: bool = False) -> None:
    assert _files(tmp_path / "tmp") == set(), "the build directory was left"
    if not outputs:
        assert _files(tmp_path / "out") == set(), "an output (or NAME.d) was left"
    assert not loops_under(tmp_path) and not mounts_under(tmp_path)
    assert processes_using(tmp_path) == []


def _one_error(text: str, expect: str) -> None:
    assert "Traceback" not in text, text
    ours = [ln for ln in text.splitlines() if ln.startswith("disk-image-create: error:")]
    assert len(ours) == 1, text
    assert expect in ours[0], text


FILL = "head -c 300M /dev/zero > {where}/fill\n"


@pytest.mark.parametrize(
    ("phase", "where"),
    [
        ("root.d", "$TARGET_ROOT"),
        ("install.d", ""),
        ("post-root.d", "$TARGET_ROOT"),
        ("finalise.d", ""),
    ],
)
def test_disk_full_in_a_phase_is_named_and_leaves_nothing(
    phase: str, where: str, tmp_path: Path, no_leaks: None
) -> None:
    # a TMP_DIR of 160 MiB holds the tree and the image's filesystem, not 300 MiB more
    env = _setup(tmp_path, {f"{phase}/50-fill": FILL.format(where=where)})
    (tmp_path / "tmp").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(tmp_path / "tmp")])
    try:
        proc = _build(tmp_path, env, "--no-tmpfs", "tiny-os", "faulty")
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode != 0, text
        _one_error(text, f"hook {phase}/50-fill of element faulty failed")
        assert "No space left on device" in text, text
        assert _files(tmp_path / "tmp") == set(), "the build directory was left"
        assert _files(tmp_path / "out") == set(), "an output (or NAME.d) was left"
        assert processes_using(tmp_path) == []
    finally:
        subprocess.run(["umount", str(tmp_path / "tmp")], check=False)
    assert not loops_under(tmp_path) and mounts_under(tmp_path) == set()


@pytest.mark.parametrize("phase", ["root.d", "post-root.d", "cleanup.d"])
def test_a_mount_a_host_hook_leaves_is_undone(phase: str, tmp_path: Path, no_leaks: None) -> None:
    body = 'mkdir -p "$TARGET_ROOT/mnt/cache"\nmount --bind /usr "$TARGET_ROOT/mnt/cache"\n'
    env = _setup(tmp_path, {f"{phase}/50-mount": body})
    proc = _build(tmp_path, env, "tiny-os", "faulty")
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text
    assert "left mounted" in text, text
    _nothing_left(tmp_path, outputs=True)
    assert (tmp_path / "out" / "img.raw").is_file()


def test_a_failing_qemu_img_is_named_and_leaves_no_output(tmp_path: Path, no_leaks: None) -> None:
    env = _setup(tmp_path, {})
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "qemu-img").write_text(
        '#!/bin/sh\nif [ "$1" = convert ]; then echo "qemu-img: write failed: I/O error" >&2;'
        ' exit 1; fi\nexec /usr/bin/qemu-img "$@"\n'
    )
    (fake / "qemu-img").chmod(0o755)
    env["PATH"] = f"{fake}:{env['PATH']}"
    proc = _build(tmp_path, env, "tiny-os")
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, text
    _one_error(text, "qemu-img")
    assert "I/O error" in text
    left = _files(tmp_path / "out")
    assert not [f for f in left if f.endswith(".qcow2") or ".tmp" in f or f.endswith(".d")], left
    _nothing_left(tmp_path, outputs=True)


def test_a_process_a_hook_leaves_running_is_stopped(tmp_path: Path, no_leaks: None) -> None:
    # diskimage-builder's elements start daemons in the chroot and rely on the builder
    env = _setup(tmp_path, {"install.d/50-daemon": "(sleep 300 &)\n"})
    proc = _build(tmp_path, env, "tiny-os", "faulty")
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text
    assert "stopping 1 process(es) still running" in text, text
    _nothing_left(tmp_path, outputs=True)


def test_two_builds_at_once_do_not_meet(tmp_path: Path, no_leaks: None) -> None:
    env = _setup(tmp_path, {"install.d/50-slow": "sleep 1\n"})
    a = _build(tmp_path, env, "tiny-os", "faulty", name="a")
    b = _build(tmp_path, env, "tiny-os", name="b")
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    for name in ("a", "b"):
        assert (tmp_path / "out" / f"{name}.raw").is_file()
        assert (tmp_path / "out" / f"{name}.qcow2").is_file()
    _nothing_left(tmp_path, outputs=True)


class _Archive:
    """A package archive on 127.0.0.1 that answers the first request, then fails as a
    network does: ``refuse`` closes its socket (connection refused), ``stall`` sends the
    headers and part of the body of the second answer and then stops answering."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.served = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        held: list[socket.socket] = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(4096)
            self.served += 1
            body = b"Package: hello\nVersion: 1.0\n" * 64
            if self.served == 1:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                conn.close()
                if self.mode == "refuse":
                    self.sock.close()
                    return
            else:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 10485760\r\n\r\n" + body)
                held.append(conn)  # never another byte, never closed until the test ends
        for c in held:
            c.close()

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=10)


# phase -> a hook that fetches two files from the archive, as an install would
FETCH = {
    # in the chroot (the fixture OS has bash but no curl): bash's /dev/tcp
    "install.d": (
        "set -eu\nfor f in Packages hello.deb; do\n"
        "  exec 3<>/dev/tcp/127.0.0.1/{port}\n"
        '  printf "GET /$f HTTP/1.0\\r\\n\\r\\n" >&3\n'
        "  rc=0\n"
        "  while IFS= read -r -t 5 line <&3 || { rc=$?; false; }; do\n"
        '    printf "%s\\n" "$line"\n'
        '  done > "/tmp/$f"\n'
        '  [ "$rc" -le 1 ] || { echo "fetching $f: no answer for 5 s" >&2; exit 4; }\n'
        "  exec 3>&-\n  echo fetched $f\ndone\n"
    ),
    # on the host, with curl
    "extra-data.d": (
        "set -eu\nfor f in Packages hello.deb; do\n"
        '  curl -fsS --max-time 5 -o "$TMP_HOOKS_PATH/$f" http://127.0.0.1:{port}/$f\n'
        "  echo fetched $f\ndone\n"
    ),
}


@pytest.mark.parametrize("phase", sorted(FETCH))
@pytest.mark.parametrize("mode", ["refuse", "stall"])
def test_the_network_failing_mid_install_is_named_and_leaves_nothing(
    phase: str, mode: str, tmp_path: Path, no_leaks: None
) -> None:
    archive = _Archive(mode)
    try:
        env = _setup(
            tmp_path, {f"{phase}/50-fetch": FETCH[phase].replace("{port}", str(archive.port))}
        )
        proc = _build(tmp_path, env, "tiny-os", "faulty")
        text, _ = proc.communicate(timeout=300)
    finally:
        archive.close()
    assert proc.returncode != 0, text
    assert archive.served >= 1 and "fetched Packages" in text, text
    assert "fetched hello.deb" not in text, text
    _one_error(text, f"hook {phase}/50-fetch of element faulty failed with exit status")
    # the hook's own words about the network reach the user with the error
    said = {
        "install.d": ("connection refused", "no answer"),
        "extra-data.d": ("couldn't connect", "timed out"),
    }
    assert any(w in text.lower() for w in said[phase]), text
    _nothing_left(tmp_path)
