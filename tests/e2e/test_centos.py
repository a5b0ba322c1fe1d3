"""centos7 / centos from the real cloud images (skips unless a CentOS image site answers).

dibpy names no download host: set DIB_CLOUD_IMAGES (the directory of the images, for
CentOS 7; DIB_CLOUD_IMAGES_STREAM for Stream) to run these.  The extraction path itself
is covered offline by tests/integration/test_elements_centos.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, mirror_unreachable

CASES = {
    "centos7": ("DIB_CLOUD_IMAGES", "sha256sum.txt", "7"),
    "centos": (
        "DIB_CLOUD_IMAGES_STREAM",
        "CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2.SHA256SUM",
        "9",
    ),
}


def mirror_reason(var: str, sums: str) -> str | None:
    return mirror_unreachable(var, sums, what="CentOS mirror", names="download host")


@pytest.mark.parametrize("element", sorted(CASES))
def test_centos_tree_from_the_cloud_image(element: str, tmp_path: Path) -> None:
    var, sums, version = CASES[element]
    reason = mirror_reason(var, sums)
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
        DIB_CLOUD_IMAGES=os.environ[var],
        DIB_IMAGE_CACHE=os.environ.get("DIBPY_TEST_IMAGE_CACHE", str(tmp_path / "cache")),
    )
    r = subprocess.run(
        [sys.executable, str(REPO / "bin/disk-image-create"), "-o", str(tmp_path / "img"),
         element, "no-final-image", "snap"],
        env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    release = (tmp_path / "snap/etc/centos-release").read_text()
    assert f"release {version}" in release
