"""The package archive's state, as fingerprints for the tree cache.

An apt-based build (one with the debootstrap element) installs whatever its mirror
publishes at build time, so the tree cache key holds the sha256 of each suite's signed
``InRelease`` (or ``Release``) file, fetched at plan time from the mirror the build will
use: ``DIB_DISTRIBUTION_MIRROR`` / ``DIB_DEBIAN_SECURITY_MIRROR``, else the host's own
apt sources, found the way the debootstrap element finds them
(``elements/debootstrap/debootstrap-tools/host_apt_sources.py``).  The suites are the
release, ``<release>-updates`` and the security suite, as that element writes them.

The digest last seen for each (mirror, suite) is kept under ``<image cache>/dibpy-archive``;
with ``--offline`` (or when the mirror cannot be reached) that one is used, and the log
says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from dibpy import run
from dibpy.elements.model import Element
from dibpy.errors import CommandError

LOG = logging.getLogger("dibpy")
HOST_SOURCES = (
    Path(__file__).resolve().parent.parent
    / "elements"
    / "debootstrap"
    / "debootstrap-tools"
    / "host_apt_sources.py"
)


def _memo(cache_dir: Path, mirror: str, suite: str) -> Path:
    tag = hashlib.sha256(f"{mirror} {suite}".encode()).hexdigest()[:16]
    return cache_dir / "dibpy-archive" / f"{tag}.json"


def suite_digest(
    mirror: str,
    suite: str,
    cache_dir: Path,
    *,
    offline: bool = False,
    unreachable: set[str] | None = None,
) -> str:
    """sha256 of ``<mirror>/dists/<suite>/InRelease`` (or ``Release``); see the docstring.

    A mirror that does not answer at all is added to ``unreachable`` and not asked again
    for the other suites (a build without network pays one timeout, not six).
    """
    memo = _memo(cache_dir, mirror, suite)
    base = f"{mirror.rstrip('/')}/dists/{suite}"
    unreachable = set() if unreachable is None else unreachable
    if not offline and mirror not in unreachable:
        for name in ("InRelease", "Release"):
            try:
                with urllib.request.urlopen(f"{base}/{name}", timeout=15) as r:
                    digest = hashlib.sha256(r.read()).hexdigest()
            except urllib.error.HTTPError as e:
                LOG.debug("tree cache: %s/%s: %s", base, name, e)
                continue
            except OSError as e:
                LOG.debug("tree cache: %s/%s: %s", base, name, e)
                unreachable.add(mirror)
                break
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"mirror": mirror, "suite": suite, "sha256": digest}))
            os.replace(tmp, memo)
            return digest
    try:
        digest = str(json.loads(memo.read_text())["sha256"])
    except (OSError, ValueError, KeyError):
        LOG.warning(
            "tree cache: no Release file of %s %s %s; the archive's state is not in the key",
            mirror,
            suite,
            "seen yet (--offline)" if offline else "could be fetched",
        )
        return "unknown"
    LOG.info(
        "tree cache: %s: using the %s %s Release digest seen last (%s)",
        "offline" if offline else "archive unreachable",
        mirror,
        suite,
        digest[:12],
    )
    return digest


def _host_sources() -> dict[str, str]:
    try:
        out = run.output([sys.executable, str(HOST_SOURCES), "/"], quiet=True)
    except (CommandError, OSError):
        return {}
    found: dict[str, str] = {}
    for line in out.splitlines():
        k, sep, v = line.partition("=")
        if sep and k not in found:
            found[k] = v.strip()
    return found


def _release(elements: Iterable[Element], environ: Mapping[str, str]) -> str:
    if environ.get("DIB_RELEASE"):
        return environ["DIB_RELEASE"]
    for el in elements:
        for f in sorted(Path(el.path).glob("environment.d/*")):
            m = re.search(r"DIB_RELEASE=\$\{DIB_RELEASE:-([A-Za-z0-9._-]+)\}", f.read_text())
            if m:
                return m.group(1)
    return ""


def archive_inputs(
    elements: Iterable[Element],
    environ: Mapping[str, str],
    cache_dir: Path,
    *,
    offline: bool = False,
) -> dict[str, str]:
    """``{"package archive <suite>": digest}`` for an apt-based build, else empty."""
    return {
        f"package archive {suite}": digest
        for _, suite, digest in archive_state(elements, environ, cache_dir, offline=offline)
    }


def archive_state(
    elements: Iterable[Element],
    environ: Mapping[str, str],
    cache_dir: Path,
    *,
    offline: bool = False,
) -> list[tuple[str, str, str]]:
    """``(mirror, suite, digest)`` of each suite an apt-based build reads, else empty.

    The mirror has no trailing slash.  The tree cache keys on the digests; the hook
    environment passes all three to the debootstrap element (``DIB_ARCHIVE_STATE``,
    :func:`dibpy.hookenv.archive_state_var`) so its bootstrap cache keys on the same state.
    """
    elements = list(elements)
    if not any(e.name == "debootstrap" for e in elements):
        return []
    release = _release(elements, environ)
    mirror = environ.get("DIB_DISTRIBUTION_MIRROR", "")
    security = environ.get("DIB_DEBIAN_SECURITY_MIRROR", "")
    # ubuntu-common sets DIB_DEBOOTSTRAP_HOST_MIRROR=0: the host's Debian archive is not its
    host_ok = environ.get("DIB_DEBOOTSTRAP_HOST_MIRROR", "1") != "0" and not any(
        e.name == "ubuntu-common" for e in elements
    )
    if (not mirror or not security) and host_ok:
        host = _host_sources()
        mirror = mirror or host.get("mirror", "")
        security = security or host.get("security", "")
    if not release or not mirror:
        LOG.warning(
            "tree cache: %s unknown at plan time; the package archive's state is not in the key",
            "the release" if not release else "the mirror",
        )
        return []
    suites = [(mirror, release), (mirror, f"{release}-updates")]
    if security:
        old = release in ("stretch", "buster")
        suites.append((security, f"{release}/updates" if old else f"{release}-security"))
    unreachable: set[str] = set()
    return [
        (
            m.rstrip("/"),
            suite,
            suite_digest(m, suite, cache_dir, offline=offline, unreachable=unreachable),
        )
        for m, suite in suites
    ]
