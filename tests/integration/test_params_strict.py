"""A misspelt DIB_* variable through the real disk-image-create: with --strict the build
fails in one line before any loop device, mount or build directory exists; without it
the same line is a warning and the build goes on.

The tiny-os fixture (the host's bash and coreutils) keeps the build to seconds, without
a network.  losetup and mount are wrapped on PATH by scripts that log each call and run
the real program, so "before any loop device or mount" is checked by what was run, not
only by what is left over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works, loops_under, mounts_under

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [str(Path(sys.executable).parent / "disk-image-create")]
if not Path(DIC[0]).exists():
    DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]
LINE = "DIB_RELASE: not read by any element of this build nor by dibpy; did you mean DIB_RELEASE?"


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def _wrap(bin_dir: Path, log: Path, *tools: str) -> None:
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        assert real, tool
        w = bin_dir / tool
        w.write_text(f'#!/bin/bash\necho "{tool} $*" >> {log}\nexec {real} "$@"\n')
        w.chmod(0o755)


def _build(
    tmp_path: Path,
    *args: str,
    elements: tuple[str, ...] = ("tiny-os", "no-final-image"),
    **extra: str,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = tmp_path / "calls.log"
    _wrap(tmp_path / "wrap", log, "losetup", "mount", "umount")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        PATH=f"{tmp_path / 'wrap'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        ELEMENTS_PATH=f"{FIXTURES}:{REPO / 'elements'}",
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        DIB_NO_CACHE="1",
    )
    env.update(extra or {"DIB_RELASE": "trixie"})
    r = subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "out" / "img"), *args, *elements],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return r, calls


def test_strict_fails_in_one_line_before_any_resource(tmp_path: Path, no_leaks: None) -> None:
    r, calls = _build(tmp_path, "--strict")
    text = r.stdout + r.stderr
    assert r.returncode == 2, text
    assert "Traceback" not in text
    errors = [ln for ln in text.splitlines() if ln.startswith("disk-image-create: error:")]
    assert errors == [f"disk-image-create: error: {LINE}"], text
    assert calls == [], f"ran before failing: {calls}"
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "out").exists()
    assert not loops_under(tmp_path) and not mounts_under(tmp_path)


def test_without_strict_it_warns_and_builds(tmp_path: Path, no_leaks: None) -> None:
    r, calls = _build(tmp_path)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    warnings = [ln for ln in text.splitlines() if LINE in ln]
    assert len(warnings) == 1, text
    assert "error" not in warnings[0].lower()
    # the same build, so the strict one above failed before what this one ran
    assert any(c.startswith("mount ") for c in calls), calls
    assert not loops_under(tmp_path) and not mounts_under(tmp_path)


def test_a_bad_declared_value_fails_in_one_line_naming_element_and_variable(
    tmp_path: Path, no_leaks: None
) -> None:
    r, calls = _build(
        tmp_path,
        elements=("debian-minimal", "vm"),
        DIB_DEBOOTSTRAP_TOOL="mmdebstrapp",
        DIB_GRUB_TIMEOUT="5s",
    )
    text = r.stdout + r.stderr
    assert r.returncode == 2, text
    assert "Traceback" not in text
    assert text.splitlines()[0] == "disk-image-create: error: 2 problems:", text
    assert "  - element 'bootloader': DIB_GRUB_TIMEOUT='5s': not an integer (parameters.yaml)" in (
        text.splitlines()
    )
    assert any(
        ln.startswith(
            "  - elements 'debian-minimal', 'debootstrap': DIB_DEBOOTSTRAP_TOOL='mmdebstrapp':"
        )
        and ln.endswith("did you mean mmdebstrap? (parameters.yaml)")
        for ln in text.splitlines()
    ), text
    assert calls == []
    assert list((tmp_path / "tmp").iterdir()) == []
