"""diskimage-builder's release as a test fixture (the conformance oracle).

The wheel of diskimage-builder 3.43.0 is downloaded from the package index at test time
into a cache and only *unpacked*: it is never installed where its ``disk-image-create``
could shadow ours, and nothing of it is committed.  Tests read its ``elements/`` tree,
its ``block_device/tests/config/`` YAML files and, where a test wants its Python resolver
as an oracle, import it from the unpacked tree in a subprocess.

The cache is ``$DIBPY_TEST_CACHE`` or ``~/.cache/dibpy-tests``.  When the index cannot
be reached, :func:`dib_release` skips the test with pip's own reason.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

DIB_VERSION = "3.43.0"


def cache_dir() -> Path:
    root = os.environ.get("DIBPY_TEST_CACHE") or os.path.expanduser("~/.cache/dibpy-tests")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def _fetch() -> tuple[Path | None, str]:
    """(unpacked tree, "") or (None, why it could not be fetched)."""
    dest = cache_dir() / f"diskimage-builder-{DIB_VERSION}"
    marker = dest / ".unpacked"
    if marker.exists():
        return dest, ""
    wheels = cache_dir() / "wheels"
    wheels.mkdir(exist_ok=True)
    found = sorted(wheels.glob(f"diskimage_builder-{DIB_VERSION}-*.whl"))
    if not found:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                f"diskimage-builder=={DIB_VERSION}",
                "-d",
                str(wheels),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        found = sorted(wheels.glob(f"diskimage_builder-{DIB_VERSION}-*.whl"))
        if r.returncode != 0 or not found:
            tail = (r.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            return None, f"cannot download diskimage-builder {DIB_VERSION}: {tail}"
    tmp = dest.with_name(dest.name + ".tmp")
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    with zipfile.ZipFile(found[0]) as z:
        z.extractall(tmp)
        for info in z.infolist():
            # zipfile drops the permission bits; hooks need their executable bit.
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(tmp / info.filename, mode)
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    tmp.rename(dest)
    marker.touch()
    return dest, ""


def dib_release() -> Path:
    """The unpacked wheel (holding ``diskimage_builder/``); skips with the probed reason."""
    path, why = _fetch()
    if path is None:
        pytest.skip(why)
    return path


def dib_elements() -> Path:
    return dib_release() / "diskimage_builder" / "elements"


def dib_block_device_configs() -> Path:
    return dib_release() / "diskimage_builder" / "block_device" / "tests" / "config"


@functools.cache
def dib_mirror_env() -> dict[str, str]:
    """The host's own Debian archive and security archive (from its apt sources), as the
    variables diskimage-builder's Debian elements read; their defaults name public hosts."""
    repo = Path(__file__).resolve().parent.parent
    tool = repo / "elements" / "debootstrap" / "debootstrap-tools" / "host_apt_sources.py"
    out = subprocess.run(
        [sys.executable, str(tool), "/"], capture_output=True, text=True, check=False
    ).stdout
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    env = {}
    if "mirror" in found:
        env["DIB_DISTRIBUTION_MIRROR"] = found["mirror"]
    if "security" in found:
        env["DIB_DEBIAN_SECURITY_MIRROR"] = found["security"]
    return env
