"""The fault matrix: a fault in every phase of an image build, and nothing left behind.

For each phase a tiny-os image build (the host's bash and coreutils: about a second) gets
one hook that fails, is killed by SIGKILL, or sends the build itself SIGTERM, SIGINT or
SIGHUP (from inside the hook, so the signal lands while that phase runs: no timing).
After each: a non-zero exit, exactly one error line naming the cause (the hook and its
element, or the signal), no traceback, and no loop device, mount, process, build
directory or output (partial or not) left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.mounts import processes_using
from tests.conftest import REPO, chroot_works, loops_under, mounts_under

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [str(Path(sys.executable).parent / "disk-image-create")]
if not Path(DIC[0]).exists():
    DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]

PHASES = (
    "root.d",
    "extra-data.d",
    "pre-install.d",
    "install.d",
    "post-install.d",
    "post-root.d",
    "block-device.d",
    "pre-finalise.d",
    "finalise.d",
    "cleanup.d",
)

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

# every fault in every phase would be 50 builds; the three signals the build handles
# alike share one code path, so SIGINT and SIGHUP are tried in one host and one chroot
# phase and after the image exists
MATRIX = [(p, f) for p in PHASES for f in ("fails", "sigkill", "sigterm")] + [
    (p, f) for p in ("root.d", "install.d", "finalise.d") for f in ("sigint", "sighup")
]


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
    el = tmp_path / "elements" / "faulty"
    (el / phase).mkdir(parents=True)
    (el / "README.rst").write_text("faulty: a hook that goes wrong\n")
    hook = el / phase / "50-fault"
    hook.write_text("#!/bin/bash\n" + body)
    hook.chmod(0o755)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "out").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=f"{tmp_path / 'elements'}:{FIXTURES}",
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        DIB_NO_CACHE="1",
    )
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
