"""-q and -v on a real (tiny) build: what the console shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def dic(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DIB_", "DIBPY_"))}
    e.update(
        ELEMENTS_PATH=str(FIXTURES),
        TMP_DIR=str(tmp_path / "tmp"),
        PROBE_OUT=str(tmp_path / "probe"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        **env,
    )
    return subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "t"), *args, "tiny-os", "probe", "no-final-image"],
        env=e,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quiet_verbose_and_dib_quiet(tmp_path: Path, no_leaks: None) -> None:
    r = dic(tmp_path, "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "running finalise.d" not in r.stderr and "+ " not in r.stderr
    r = dic(tmp_path, "-v")
    assert r.returncode == 0, r.stderr[-3000:]
    # debug: every command line run.py runs
    assert "running finalise.d" in r.stderr and "+ mount " in r.stderr
    # -v wins over DIB_QUIET=1; without it, DIB_QUIET=1 is quiet
    r = dic(tmp_path, "-v", DIB_QUIET="1")
    assert "running finalise.d" in r.stderr
    r = dic(tmp_path, DIB_QUIET="1")
    assert r.returncode == 0 and "running finalise.d" not in r.stderr
