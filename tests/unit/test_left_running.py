"""What a build's hooks leave running: found by the build directory in their environment
however they detached, waited for, then stopped (tests/integration/test_pipeline.py has
a real build's)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from dibpy import run
from tests.conftest import process_alive


def _detached(build_dir: Path, seconds: float) -> int:
    """A process started the way a hook's background job would be (its own session, its
    parent gone), with the hook environment's TMP_BUILD_DIR; returns its pid."""
    env = dict(os.environ, TMP_BUILD_DIR=str(build_dir))
    out = subprocess.run(
        ["setsid", "-f", "sh", "-c", f"echo $$; exec sleep {seconds} >/dev/null 2>&1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0])


def test_what_finishes_in_time_is_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid = _detached(tmp_path, 0.5)
    other = _detached(tmp_path / "another-build", 30)
    try:
        assert pid in run.left_running(tmp_path)
        assert other not in run.left_running(tmp_path)
        start = time.monotonic()
        with caplog.at_level(logging.INFO, logger="dibpy"):
            run.reap_left_running(tmp_path, grace=20)
        assert time.monotonic() - start < 15
        assert not process_alive(pid)
        assert "waiting up to 20 s" in caplog.text and "stopping" not in caplog.text
        assert process_alive(other)  # another build's: not ours to touch
    finally:
        os.kill(other, 9)


def test_what_outlives_the_grace_is_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid = _detached(tmp_path, 60)
    with caplog.at_level(logging.INFO, logger="dibpy"):
        run.reap_left_running(tmp_path, grace=0.3)
    assert not process_alive(pid)
    assert f"stopping what the hooks left running: sleep ({pid})" in caplog.text
    assert run.left_running(tmp_path) == {}
