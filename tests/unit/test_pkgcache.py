"""Which builds bind the shared apt cache, and where (the binding itself:
tests/integration/test_apt_local_cache.py)."""

from __future__ import annotations

import os
from pathlib import Path

from dibpy import pkgcache, recovery
from dibpy.elements.model import Element
from dibpy.recovery import start_time
from tests.conftest import write


def _elements(tmp_path: Path, distro: str | None) -> list[Element]:
    os_el = tmp_path / "my-os"
    body = f"export DISTRO_NAME={distro}\n" if distro else "export OTHER=1\n"
    write(os_el / "environment.d" / "10-my-os.bash", body)
    (tmp_path / "dpkg").mkdir()
    return [Element("my-os", os_el), Element("dpkg", tmp_path / "dpkg")]


def test_the_pool_is_per_distribution_and_only_for_dpkg_images(tmp_path: Path) -> None:
    els = _elements(tmp_path, "debian")
    cache = tmp_path / "cache"
    assert pkgcache.pool_dir(els, {}, cache) == cache / "apt" / "debian"
    assert pkgcache.pool_dir(els, {"DIB_APT_LOCAL_CACHE": "1"}, cache) == cache / "apt" / "debian"
    assert pkgcache.pool_dir(els, {"DIB_APT_LOCAL_CACHE": "0"}, cache) is None
    assert pkgcache.pool_dir(els[:1], {}, cache) is None  # no dpkg element: not apt
    (tmp_path / "b").mkdir()
    assert pkgcache.pool_dir(_elements(tmp_path / "b", None), {}, cache) == cache / "apt" / "dpkg"


def test_only_the_work_directories_of_builds_that_are_gone_are_swept(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    me = os.getpid()
    live = pool / f".build-{me}-{start_time(me)}-aaaa"
    dead = pool / ".build-999999999-5-bbbb"
    reused = pool / f".build-{me}-1-cccc"  # this pid, another process's start time
    for d in (live, dead, reused):
        (d / "partial").mkdir(parents=True)
    (pool / "bc_1.07.1-3_amd64.deb").write_bytes(b"deb")
    recovery.sweep_work_dirs(pool)
    assert live.is_dir() and not dead.exists() and not reused.exists()
    assert (pool / "bc_1.07.1-3_amd64.deb").is_file()
