"""The package archive's state read at plan time (dibpy.archivestate), against an archive
served on 127.0.0.1: what both the tree cache and the debootstrap element's bootstrap
cache key on (DIB_ARCHIVE_STATE)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dibpy import archivestate
from dibpy.elements.model import Element
from tests.conftest import serve_directory, url_of


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "archive"
    (root / "dists/trixie").mkdir(parents=True)
    with serve_directory(root) as server:
        yield f"{url_of(server)}/", root


def state(mirror: str, cache: Path, **kw: bool) -> list[tuple[str, str, str]]:
    els = [Element("debootstrap", Path("/nonexistent/debootstrap"))]
    env = {
        "DIB_RELEASE": "trixie",
        "DIB_DISTRIBUTION_MIRROR": mirror,
        "DIB_DEBIAN_SECURITY_MIRROR": mirror,
    }
    return archivestate.archive_state(els, env, cache, **kw)


def test_a_new_inrelease_changes_the_state_and_the_same_one_does_not(
    archive: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = archive
    release = root / "dists/trixie/InRelease"
    release.write_text("Date: Mon, 01 Dec 2026 00:00:00 UTC\n")
    first = state(url, tmp_path / "cache")
    # mirror without its trailing slash (the hook strips it too); the three suites
    assert [(m, s) for m, s, _ in first] == [
        (url.rstrip("/"), "trixie"),
        (url.rstrip("/"), "trixie-updates"),
        (url.rstrip("/"), "trixie-security"),
    ]
    assert first[0][2] == hashlib.sha256(release.read_bytes()).hexdigest()
    assert [d for _, _, d in first[1:]] == ["unknown", "unknown"]
    assert state(url, tmp_path / "cache") == first
    release.write_text("Date: Tue, 02 Dec 2026 00:00:00 UTC\n")  # a security update published
    second = state(url, tmp_path / "cache")
    assert second[0][2] != first[0][2]
    assert second[0][2] == hashlib.sha256(release.read_bytes()).hexdigest()


def test_offline_or_unreachable_the_digest_seen_last_is_used_and_logged(
    archive: tuple[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, root = archive
    (root / "dists/trixie/Release").write_text("Suite: trixie\n")  # no InRelease: Release
    seen = state(url, tmp_path / "cache")[0][2]
    assert seen == hashlib.sha256(b"Suite: trixie\n").hexdigest()
    (root / "dists/trixie/Release").write_text("Suite: trixie\nDate: later\n")
    caplog.set_level("INFO", logger="dibpy")
    assert state(url, tmp_path / "cache", offline=True)[0][2] == seen
    assert "offline: using the" in caplog.text and "trixie Release digest seen last" in caplog.text
