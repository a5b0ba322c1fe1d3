"""DIB_APT_LOCAL_CACHE in real Debian builds (root, chroot, the archive): the packages apt
downloads are kept in $DIB_IMAGE_CACHE/apt/debian, never in the tree, and the next build
installs them from there without downloading them again; a work directory a killed build
left beside the pool is removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import chroot_works, snapshot_tree, write, write_snap_element, write_test_debian
from tests.integration.test_elements_debian_tree import archive_reachable

SEEN = """#!/bin/bash
set -eu -o pipefail
# in the chroot, after package-installs: what apt's archive directory holds
ls /var/cache/apt/archives | grep -c '^bc_.*\\.deb$' > /etc/bc-debs-seen || true
"""
IN_TREE = """#!/bin/bash
set -eu -o pipefail
# on the host, after the last chroot phase: what the tree itself holds (debootstrap's own
# packages stay there until cleanup.d; bc's came in install.d)
find "$TARGET_ROOT/var/cache/apt/archives" -name 'bc_*.deb' | wc -l \
    > "$TARGET_ROOT/etc/debs-in-tree"
"""


@pytest.fixture
def els(tmp_path: Path) -> Path:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    els = tmp_path / "elements"
    write_test_debian(els)
    write_snap_element(els)
    write(els / "no-final-image/README.rst", "Stop after the tree is built.\n")
    write(els / "aptc/README.rst", "Installs bc and reports where its package is.\n")
    write(els / "aptc/element-deps", "package-installs\n")
    write(els / "aptc/package-installs.yaml", "bc:\n")
    write(els / "aptc/install.d/99-aptc-seen", SEEN, 0o755)
    write(els / "aptc/post-root.d/99-aptc-in-tree", IN_TREE, 0o755)
    return els


def test_downloaded_packages_are_kept_outside_the_tree_and_reused(
    tmp_path: Path, els: Path
) -> None:
    cache = tmp_path / "cache"
    pool = cache / "apt" / "debian"
    # what a build killed outright leaves: a work directory whose process is gone
    stale = pool / ".build-999999999-1-abcd"
    (stale / "partial").mkdir(parents=True)

    snap, log = snapshot_tree(tmp_path / "one", cache, els, ["aptc"])
    assert (snap / "etc/bc-debs-seen").read_text().strip() == "1"  # apt saw it while bound
    assert (snap / "etc/debs-in-tree").read_text().strip() == "0"  # but the tree never had it
    kept = list(pool.glob("bc_*.deb"))
    assert len(kept) == 1, sorted(p.name for p in pool.iterdir())
    assert "apt cache:" in log and "kept in" in log
    assert not stale.exists()
    assert not list(pool.glob(".build-*")), "a work directory was left beside the pool"
    before = os.stat(kept[0])

    snap, log = snapshot_tree(tmp_path / "two", cache, els, ["aptc"])
    assert (snap / "etc/bc-debs-seen").read_text().strip() == "1"
    assert (snap / "usr/bin/bc").is_file()
    # installed from the pool: apt fetched no bc package, and the pool's file is the same
    fetched = [ln for ln in log.splitlines() if "Get:" in ln and " bc " in ln]
    assert not fetched, fetched
    after = os.stat(kept[0])
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(pool.glob(".build-*"))


def test_the_cache_can_be_turned_off(tmp_path: Path, els: Path) -> None:
    cache = tmp_path / "cache"
    snap, _ = snapshot_tree(tmp_path / "off", cache, els, ["aptc"], DIB_APT_LOCAL_CACHE="0")
    # as before: the packages stay in the tree until cleanup.d empties apt's cache
    assert (snap / "etc/debs-in-tree").read_text().strip() == "1"
    assert not (cache / "apt").exists()
