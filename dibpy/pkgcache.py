"""The package files apt downloads, kept for the next build: ``DIB_APT_LOCAL_CACHE``.

diskimage-builder's dpkg element bind-mounts ``$DIB_IMAGE_CACHE/apt/$DISTRO_NAME`` at the
tree's ``/var/cache/apt/archives`` (on by default; ``DIB_APT_LOCAL_CACHE=0`` turns it
off), so a package downloaded once is not downloaded again, and the ``.deb`` files never
enter the tree.  dibpy does the same, from its own side of the chroot: the bind is made
for each stretch of chroot phases and undone before the tree is checkpointed (a hook's
own bind mount would stop the tree cache from keeping the tree), copied or measured.

Several builds may share the pool at once, and apt locks its archive directory: each
build binds a directory of its own beside the pool, ``.build-PID-START-XXXX``, holding
hard links to the pool's packages, and links what apt added into the pool when the
stretch ends.  The directory is removed then; one whose build was killed outright is
removed by the next build that uses the pool.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from dibpy import mounts, recovery
from dibpy.elements.model import Element
from dibpy.log import LOG

#: the tree's apt archive directory, which the pool is bound at
ARCHIVES = "var/cache/apt/archives"
_DISTRO = re.compile(r"^\s*export\s+DISTRO_NAME=[\"']?([A-Za-z0-9._-]+)[\"']?\s*$", re.M)


def distro_name(elements: Iterable[Element]) -> str | None:
    """``DISTRO_NAME`` as the elements' ``environment.d`` files set it (the last one, in
    element order, that sets it to a plain value), or None."""
    name = None
    for el in elements:
        env = el.path / "environment.d"
        if not env.is_dir():
            continue
        for f in sorted(env.iterdir()):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for m in _DISTRO.finditer(f.read_text()):
                    name = m.group(1)
    return name


def pool_dir(
    elements: Iterable[Element], environ: Mapping[str, str], image_cache: Path
) -> Path | None:
    """The pool a build with these elements binds, or None: only images built with the
    dpkg element, and not with ``DIB_APT_LOCAL_CACHE=0``."""
    elements = list(elements)
    if environ.get("DIB_APT_LOCAL_CACHE", "1") == "0":
        return None
    if not any(el.name == "dpkg" for el in elements):
        return None
    return image_cache / "apt" / (distro_name(elements) or "dpkg")


def _link_all(src: Path, dest: Path) -> int:
    """Hard-link ``src``'s package files into ``dest`` (those not there already)."""
    n = 0
    for f in src.glob("*.deb"):
        with contextlib.suppress(FileExistsError):
            os.link(f, dest / f.name)
            n += 1
    return n


@contextlib.contextmanager
def bound(root: Path, pool: Path) -> Iterator[None]:
    """The pool's packages at ``root``'s apt archive directory while the context runs
    (nothing if the tree has no such directory); what apt downloaded goes into the pool
    at the end, whatever happened.  Owns the bind mount and the work directory."""
    target = root / ARCHIVES
    if not target.is_dir() or target.is_symlink() or mounts.is_mounted(target):
        # no apt here, or a hook bound a cache there itself (diskimage-builder's own dpkg
        # element does, in root.d): that one is used
        yield
        return
    recovery.sweep_work_dirs(pool)
    work = recovery.work_dir(pool)
    try:
        (work / "partial").mkdir()
        _link_all(pool, work)
        try:
            with contextlib.ExitStack() as stack:
                mounts.mount(["--bind", str(work)], target, stack, "the shared apt cache")
                yield
        finally:
            # a package apt finished is whole (it renames it in from partial/)
            added = _link_all(work, pool)
            if added:
                LOG.info("apt cache: %d package(s) kept in %s", added, pool)
    finally:
        shutil.rmtree(work, ignore_errors=True)
