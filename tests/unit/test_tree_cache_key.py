"""The tree cache key's inputs: the package archive's state (a local archive on 127.0.0.1),
the variables hooks see, and the reasons a miss gives."""

from __future__ import annotations

import http.server
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dibpy import treecache
from dibpy.elements.model import Element
from tests.conftest import REPO, serve_directory, url_of


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[str, Path, http.server.HTTPServer]]:
    """A Debian-style archive served on 127.0.0.1: (mirror URL, its root directory)."""
    root = tmp_path / "archive"
    (root / "dists" / "testrel").mkdir(parents=True)
    (root / "dists" / "testrel" / "InRelease").write_text("Suite: testrel\nDate: one\n")
    with serve_directory(root) as server:
        yield f"{url_of(server)}/debian", root, server


def _elements(tmp_path: Path) -> list[Element]:
    out = []
    for name in ("debootstrap", "my-os"):
        d = tmp_path / "elements" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "README.rst").write_text(name)
        out.append(Element(name, d))
    return out


def _inputs(tmp_path: Path, env: dict[str, str], offline: bool = False) -> dict[str, str]:
    return treecache.tree_inputs(
        _elements(tmp_path),
        {"arch": "amd64"},
        env,
        tmp_path / "no-lib",
        cache_dir=tmp_path / "cache",
        offline=offline,
    )


def test_a_changed_inrelease_changes_the_key(
    tmp_path: Path,
    archive: tuple[str, Path, http.server.HTTPServer],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, root, server = archive
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    # the mirror serves the archive under /debian: the directory is its root
    (root / "debian").symlink_to(".")
    env = {
        "DIB_RELEASE": "testrel",
        "DIB_DISTRIBUTION_MIRROR": url,
        "DIB_DEBIAN_SECURITY_MIRROR": url,
    }
    first = _inputs(tmp_path, env)
    assert first["package archive testrel"] != "unknown"
    assert treecache.key_of(_inputs(tmp_path, env)) == treecache.key_of(first)

    (root / "dists" / "testrel" / "InRelease").write_text("Suite: testrel\nDate: two\n")
    second = _inputs(tmp_path, env)
    assert treecache.key_of(second) != treecache.key_of(first)
    [why] = treecache.describe_changes(first, second)
    assert why.startswith("package archive testrel changed (")

    # offline: the digest seen last, and the log says so
    (root / "dists" / "testrel" / "InRelease").write_text("Suite: testrel\nDate: three\n")
    with caplog.at_level(logging.INFO, logger="dibpy"):
        offline = _inputs(tmp_path, env, offline=True)
    assert offline["package archive testrel"] == second["package archive testrel"]
    assert "offline: using the" in caplog.text and "testrel Release digest seen last" in caplog.text

    # the archive does not answer: the digest seen last too, and the log says why
    server.shutdown()
    server.server_close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dibpy"):
        down = _inputs(tmp_path, env)
    assert down["package archive testrel"] == second["package archive testrel"]
    assert "archive unreachable: using the" in caplog.text


def test_no_archive_state_without_debootstrap(tmp_path: Path) -> None:
    els = [e for e in _elements(tmp_path) if e.name != "debootstrap"]
    got = treecache.tree_inputs(
        els, {}, {"DIB_RELEASE": "x"}, tmp_path / "no-lib", cache_dir=tmp_path / "c"
    )
    assert not any(k.startswith("package archive") for k in got)


def test_which_variables_count() -> None:
    env = {
        "IPA_REMOVE_FIRMWARE": "1",
        "PATH": "/usr/bin",
        "http_proxy": "http://127.0.0.1:3128",
        "TERM": "xterm",
        "SSH_AUTH_SOCK": "/x",
        "PWD": "/w",
        "DIB_RELEASE": "bookworm",
        "DIB_IMAGE_CACHE": "/c",
        "CI_RUN": "7",
        "DIB_TREE_CACHE_IGNORE_VARS": "CI_RUN",
    }
    seen = treecache.hook_visible(env)
    assert set(seen) == {"IPA_REMOVE_FIRMWARE", "PATH", "http_proxy", "DIB_RELEASE"}
    # -c: hooks see only HOME, TERM, PATH, USER and DIB_*
    assert set(treecache.hook_visible(env, clear_env=True)) == {"PATH", "DIB_RELEASE"}


def test_miss_reasons_name_the_input() -> None:
    old = {"variable A": "1", "element x": "e1", "source repository r": "a" * 40}
    new = {"variable A": "2", "element x": "e1", "source repository r": "b" * 40, "file F": "f"}
    assert treecache.describe_changes(old, new) == [
        "file F added",
        f"source repository r changed ({'a' * 12} -> {'b' * 12})",
        "variable A changed",
    ]


def test_an_element_declares_what_its_hooks_fetch(tmp_path: Path) -> None:
    el = tmp_path / "elements" / "fetcher"
    el.mkdir(parents=True)
    data = tmp_path / "data.bin"
    data.write_text("one")
    (el / "tree-cache-inputs").write_text(f"# what 50-fetch downloads\nfile {data}\n")
    args = ({}, {}, tmp_path / "no-lib")
    first = treecache.tree_inputs([Element("fetcher", el)], *args)
    data.write_text("two")
    second = treecache.tree_inputs([Element("fetcher", el)], *args)
    assert treecache.describe_changes(first, second)[0].startswith(
        f"declared input fetcher: file {data} changed ("
    )


def test_a_password_is_not_stored_as_a_fast_hash(tmp_path: Path) -> None:
    import hashlib

    got = treecache.tree_inputs([], {}, {"DIB_DEV_USER_PASSWORD": "hunter2"}, tmp_path)
    fp = got["variable DIB_DEV_USER_PASSWORD"]
    assert "hunter2" not in fp and fp not in hashlib.sha256(b"hunter2").hexdigest()
    other = treecache.tree_inputs([], {}, {"DIB_DEV_USER_PASSWORD": "hunter3"}, tmp_path)
    assert other["variable DIB_DEV_USER_PASSWORD"] != fp


def test_a_declared_input_takes_the_builds_variables(tmp_path: Path) -> None:
    """``${VAR}`` in tree-cache-inputs: the published checksum list of the cloud images
    directory the build uses; a new list is a miss; unset, the line does not apply."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "SHA256SUMS").write_text("a" * 64 + " *noble.squashfs\n")
    ubuntu = Element("ubuntu", REPO / "elements" / "ubuntu")
    env = {"DIB_CLOUD_IMAGES": f"file://{site}"}
    first = treecache.tree_inputs([ubuntu], {}, env, tmp_path / "no-lib")
    (site / "SHA256SUMS").write_text("b" * 64 + " *noble.squashfs\n")
    second = treecache.tree_inputs([ubuntu], {}, env, tmp_path / "no-lib")
    changes = [c for c in treecache.describe_changes(first, second) if "declared" in c]
    assert len(changes) == 1, changes
    assert changes[0].startswith(f"declared input ubuntu: url file://{site}/SHA256SUMS changed")
    unset = treecache.tree_inputs([ubuntu], {}, {}, tmp_path / "no-lib")
    assert not [k for k in unset if k.startswith("declared input")]
    assert treecache._expand("${A:-x}/$B/${C}", {"B": "b", "C": "c"}) == "x/b/c"
    assert treecache._expand("${A}/f", {}) is None
