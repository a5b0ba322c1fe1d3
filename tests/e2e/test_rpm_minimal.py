"""centos-minimal / opensuse-minimal from real mirrors (skip unless the mirror answers).

dibpy names no mirror host: set DIBPY_TEST_CENTOS_MIRROR (the directory holding
9-stream/) or DIBPY_TEST_OPENSUSE_MIRROR (the directory holding distribution/ and
update/) to run these.  The bootstrap hooks themselves are covered offline by
tests/integration/test_elements_rpm_minimal.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, mirror_unreachable

CASES = {
    "centos-minimal": ("DIBPY_TEST_CENTOS_MIRROR", "9-stream/BaseOS/x86_64/os/repodata/repomd.xml"),
    "opensuse-minimal": (
        "DIBPY_TEST_OPENSUSE_MIRROR",
        "distribution/leap/15.5/repo/oss/repodata/repomd.xml",
    ),
}


@pytest.mark.parametrize("element", sorted(CASES))
def test_minimal_tree_from_the_mirror(element: str, tmp_path: Path) -> None:
    var, probe = CASES[element]
    reason = mirror_unreachable(var, probe)
    if reason:
        pytest.skip(reason)
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
        DIB_DISTRIBUTION_MIRROR=os.environ[var],
    )
    r = subprocess.run(
        [sys.executable, str(REPO / "bin/disk-image-create"), "-o", str(tmp_path / "img"),
         element, "no-final-image", "snap"],
        env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    rpms = subprocess.run(
        ["rpm", "--root", str(tmp_path / "snap"), "--dbpath", "/var/lib/rpm", "-qa"],
        capture_output=True,
        text=True,
    )
    assert rpms.returncode == 0, rpms.stderr
    names = rpms.stdout
    assert ("dnf-" if element == "centos-minimal" else "zypper-") in names
    assert "kernel" in names
