"""Tree cache checkpoints in a real Debian build (debootstrap, apt, a chroot): an edited
post-install.d hook of a user element restores the tree as it was after install.d and runs
post-install.d again, and the tree holds the edit; an unchanged rebuild hits every
checkpoint.  The bootstrap goes through the bootstrap cache in DIB_IMAGE_CACHE (default
~/.cache/image-create, shared with test_elements_debian_tree.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works, write, write_test_debian
from tests.integration.test_elements_debian_tree import archive_reachable

INSTALL = """#!/bin/bash
# run {nonce}: a new install.d hook per test run, so that run's later checkpoints are new
set -eu
echo "install.d" >> /etc/ckpt-ran
"""
POST = """#!/bin/bash
set -eu
echo "post-install.d {tag}" >> /etc/ckpt-ran
# something only the real tree answers: the dpkg installed by the bootstrap
dpkg-query -W -f '${{Version}}\\n' dpkg > /etc/ckpt-{tag}
"""


def _build(tmp: Path, els: Path, name: str) -> tuple[dict[str, object], Path, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    # one SNAP_OUT for every build: a variable hooks see is an input of the tree
    snap = tmp / "snap.tar"
    env.update(
        ELEMENTS_PATH=str(els),
        TMP_DIR=str(tmp / "tmp"),
        SNAP_OUT=str(snap),
        DIB_IMAGE_CACHE=os.environ.get(
            "DIB_IMAGE_CACHE", str(Path.home() / ".cache" / "image-create")
        ),
    )
    (tmp / "tmp").mkdir(exist_ok=True)
    out = tmp / "out" / name
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "disk-image-create"), "-o", str(out)]
        + ["test-debian", "snap", "no-final-image", "ckpt"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    record = json.loads((out.with_name(name + ".d") / "dibpy-build.json").read_text())
    tc = record["tree_cache"]
    assert isinstance(tc, dict)
    return tc, snap.rename(tmp / f"{name}.tar"), log


def _member(snap: Path, name: str) -> str | None:
    with tarfile.open(snap) as t:
        try:
            f = t.extractfile(name)
        except KeyError:
            return None
        return f.read().decode() if f is not None else None


def test_an_edited_post_install_hook_restores_the_tree_after_install(
    tmp_path: Path, no_leaks: None
) -> None:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    els = tmp_path / "elements"
    write_test_debian(els)
    write(els / "no-final-image/README.rst", "Stop after the tree is built.\n")
    write(els / "snap/README.rst", "Snapshot the finished tree.\n")
    write(
        els / "snap/cleanup.d/99-snap",
        '#!/bin/bash\nset -eu\ntar -C "$TARGET_ROOT" --numeric-owner -cf "$SNAP_OUT" .\n',
        0o755,
    )
    write(els / "ckpt/README.rst", "A hook in install.d and one in post-install.d.\n")
    write(els / "ckpt/install.d/50-ckpt", INSTALL.format(nonce=uuid.uuid4()), 0o755)
    post = els / "ckpt/post-install.d/50-ckpt-post"
    write(post, POST.format(tag="v1"), 0o755)

    first, snap, log = _build(tmp_path, els, "a")
    assert _member(snap, "./etc/ckpt-ran") == "install.d\npost-install.d v1\n"
    assert "tree cache: miss after install.d" in log, log[-3000:]
    version = _member(snap, "./etc/ckpt-v1")
    assert version and version[0].isdigit()

    write(post, POST.format(tag="v2"), 0o755)
    edited, snap, log = _build(tmp_path, els, "b")
    assert "tree cache: hit after install.d: reusing cached tree" in log, log[-3000:]
    assert (
        "tree cache: miss after post-install.d: post-install.d hook 50-ckpt-post of element "
        "ckpt changed" in log
    ), log[-3000:]
    assert edited["restored_after"] == "install.d"
    # install.d did not run again; the edited hook did, the old one's effect is gone
    assert _member(snap, "./etc/ckpt-ran") == "install.d\npost-install.d v2\n"
    assert _member(snap, "./etc/ckpt-v2") == version and _member(snap, "./etc/ckpt-v1") is None
    assert "running install.d/" not in log

    again, snap, log = _build(tmp_path, els, "c")
    assert again["reused"] is True, log[-3000:]
    points = again["checkpoints"]
    assert isinstance(points, list) and all(p["hit"] for p in points)
    assert _member(snap, "./etc/ckpt-ran") == "install.d\npost-install.d v2\n"
