"""ubuntu-minimal from a real Ubuntu mirror (skips here: only Debian's archive answers).

The mirror is DIB_DISTRIBUTION_MIRROR, else the default of the host's debootstrap for the
release (read from its script, so no host name is written here).  The Ubuntu keyring
must be installed too.  What is testable without the network is in
tests/integration/test_elements_ubuntu.py.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

RELEASE = os.environ.get("DIB_RELEASE", "jammy")
KEYRING = os.environ.get("DIB_UBUNTU_KEYRING", "/usr/share/keyrings/ubuntu-archive-keyring.gpg")


def debootstrap_default_mirror(release: str) -> str | None:
    script = Path("/usr/share/debootstrap/scripts") / release
    if not script.exists():
        return None
    text = script.read_text()
    # the release's script, or the script it sources (gutsy for modern Ubuntu)
    m = re.search(r"^\s*\.\s+\S*/(\w+)\s*$", text, re.M)
    if m and "default_mirror" not in text:
        text = (script.parent / m.group(1)).read_text()
    found = re.findall(r"default_mirror\s+(\S+)", text)
    # the first entry is for releases moved to the old-releases archive; the current
    # ones use the second (amd64/i386)
    return found[1] if len(found) > 1 else (found[0] if found else None)


@functools.cache
def ubuntu_reason() -> str | None:
    mirror = os.environ.get("DIB_DISTRIBUTION_MIRROR") or debootstrap_default_mirror(RELEASE)
    if not mirror:
        return f"the host's debootstrap does not know Ubuntu {RELEASE}"
    r = subprocess.run(
        [
            "curl",
            "-fsS",
            "-o",
            "/dev/null",
            "--max-time",
            "20",
            f"{mirror}/dists/{RELEASE}/Release",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return f"Ubuntu mirror unreachable: {r.stderr.strip()}"
    if not Path(KEYRING).is_file():
        return f"Ubuntu keyring {KEYRING} is not installed (package ubuntu-keyring)"
    return None


@pytest.fixture(autouse=True)
def _need_ubuntu_mirror() -> None:
    reason = ubuntu_reason()
    if reason:
        pytest.skip(reason)


def test_ubuntu_minimal_tree(tmp_path: Path) -> None:
    els = tmp_path / "els"
    (els / "snap/cleanup.d").mkdir(parents=True)
    (els / "snap/README.rst").write_text("snapshot\n")
    hook = els / "snap/cleanup.d/99-snap"
    hook.write_text('#!/bin/bash\nset -eu -o pipefail\ncp -a "$TARGET_ROOT" "$SNAP_OUT"\n')
    hook.chmod(0o755)
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=str(els),
        TMP_DIR=str(tmp_path / "tmp"),
        SNAP_OUT=str(tmp_path / "snap"),
        DIB_RELEASE=RELEASE,
        DIB_IMAGE_CACHE=os.environ.get("DIBPY_TEST_IMAGE_CACHE", str(tmp_path / "cache")),
    )
    if os.environ.get("DIB_DISTRIBUTION_MIRROR"):
        env["DIB_DISTRIBUTION_MIRROR"] = os.environ["DIB_DISTRIBUTION_MIRROR"]
    r = subprocess.run(
        [sys.executable, str(REPO / "bin/disk-image-create"), "-o", str(tmp_path / "img"),
         "ubuntu-minimal", "no-final-image", "snap"],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    snap = tmp_path / "snap"
    assert "ID=ubuntu" in (snap / "etc/os-release").read_text()
    assert list((snap / "boot").glob("vmlinuz-*")), "linux-image-generic installed a kernel"
    assert f"{RELEASE}-security" in (snap / "etc/apt/sources.list").read_text()
