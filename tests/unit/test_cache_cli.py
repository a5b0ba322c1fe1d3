"""dibpy cache list/show/prune/clear and DIB_CACHE_MAX_SIZE: least recently used goes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from dibpy import treecache
from dibpy.cli import cache as cli

MIB = 1024 * 1024


def _entry(
    cache: Path, key: str, mib: int, used_ago: float, elements: str = "a b", after: str = ""
) -> None:
    d = cache / "dibpy-trees"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{key}.tar.zst").write_bytes(b"\0" * (mib * MIB))
    meta = d / f"{key}.tar.json"
    data: dict[str, object] = {"created": time.time() - used_ago, "elements": elements}
    if after:
        data["after"] = after
    meta.write_text(json.dumps(data))
    t = time.time() - used_ago
    os.utime(meta, (t, t))


def _keys(cache: Path) -> list[str]:
    return [e.key for e in treecache.entries(cache)]


def test_list_show_prune_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for key, mib, ago, after in (
        ("aaa111", 3, 10, "install.d"),
        ("bbb222", 2, 3600, "post-root.d"),
        ("ccc333", 4, 7 * 86400, ""),
    ):
        _entry(tmp_path, key, mib, ago, after=after)
    assert _keys(tmp_path) == ["aaa111", "bbb222", "ccc333"]  # most recently used first
    assert cli.main(["list", "--image-cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 entries, 9 MiB" in out and out.index("aaa111") < out.index("ccc333")
    # each entry is a checkpoint: the phase the tree was kept after (an entry written
    # before checkpoints existed is the whole tree, after post-root.d)
    rows = {line.split()[0]: line for line in out.splitlines() if line[:3] in ("aaa", "ccc")}
    assert "after install.d" in rows["aaa111"] and "after post-root.d" in rows["ccc333"]
    assert cli.main(["show", "bbb", "--image-cache", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["elements"] == "a b"
    # unused for more than 2 days
    assert cli.main(["prune", "--max-age", "2d", "--image-cache", str(tmp_path)]) == 0
    assert _keys(tmp_path) == ["aaa111", "bbb222"]
    # at most 3 MiB: the least recently used goes first
    assert cli.main(["prune", "--max-size", "3M", "--image-cache", str(tmp_path)]) == 0
    assert _keys(tmp_path) == ["aaa111"]
    assert cli.main(["clear", "--image-cache", str(tmp_path)]) == 0
    assert _keys(tmp_path) == [] and not list((tmp_path / "dibpy-trees").iterdir())


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, said in (
        (["show", "nope"], "no entry with key 'nope'"),
        (["prune"], "give --max-size, --max-age or both"),
        (["prune", "--max-age", "soon"], "prune --max-age 'soon': not an age"),
        (["prune", "--max-size", "lots"], "prune --max-size"),
    ):
        assert cli.main([*argv, "--image-cache", str(tmp_path)]) != 0
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, err


def test_a_save_prunes_to_dib_cache_max_size(tmp_path: Path) -> None:
    _entry(tmp_path, "old111", 2, 3600)
    _entry(tmp_path, "new222", 2, 60)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(os.urandom(MIB))
    cache = treecache.TreeCache(tmp_path, max_size=int(3.5 * MIB))
    cache.save_in_background("fresh333", tree, {"elements": "x", "arch": "amd64"})
    cache.wait()
    # the fresh entry stays; then the least recently used go until it fits
    assert _keys(tmp_path) == ["fresh333", "new222"]
    # a reuse makes an entry the most recently used
    meta = tmp_path / "dibpy-trees" / "fresh333.tar.json"
    os.utime(meta, (time.time() - 7200, time.time() - 7200))
    assert _keys(tmp_path) == ["new222", "fresh333"]
    hit = cache.lookup("fresh333")
    assert hit is not None
    (tmp_path / "restored").mkdir()
    cache.restore(hit, tmp_path / "restored")
    assert (tmp_path / "restored" / "f").read_bytes() == (tree / "f").read_bytes()
    assert _keys(tmp_path) == ["fresh333", "new222"]


def _layer(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    d = tmp_path / name
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def _other_filesystem(near: Path) -> Path | None:
    """A directory on another filesystem than ``near`` (a tmpfs, as a build's is)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != near.stat().st_dev:
        return shm
    return None


def test_a_layer_on_the_cache_filesystem_is_renamed_in_and_held(tmp_path: Path) -> None:
    cache = treecache.TreeCache(tmp_path, layered=True)
    upper = _layer(tmp_path, "build/1/upper", {"etc/x": b"x" * MIB})
    desc = {"elements": "a b", "arch": "amd64", "after": "install.d", "parent": ""}
    lower = cache.keep_layer("k1", upper, desc)
    # no copy: the directory itself moved into the cache, and the build stacks that
    assert lower == tmp_path / "dibpy-trees" / "k1.layer" and not upper.exists()
    assert (lower / "etc" / "x").read_bytes() == b"x" * MIB
    [e] = treecache.entries(tmp_path)
    assert (e.key, e.kind, e.after, e.size) == ("k1", treecache.LAYER, "install.d", MIB)
    assert cache.lookup("k1") is not None and cache.has("k1")
    # the build holds it: neither `dibpy cache clear` nor a size bound takes it away ...
    assert treecache.remove(e) is False and lower.is_dir()
    assert treecache.prune_to_size(tmp_path, 0) == [] and lower.is_dir()
    assert cli.main(["clear", "--image-cache", str(tmp_path)]) == 0
    assert lower.is_dir()
    # ... until the build lets go
    cache.release()
    assert treecache.remove(e) is True
    assert not lower.exists() and list((tmp_path / "dibpy-trees").iterdir()) == []


def test_a_layer_of_a_key_kept_already_is_used_as_it_is(tmp_path: Path) -> None:
    cache = treecache.TreeCache(tmp_path, layered=True)
    desc = {"elements": "a", "arch": "amd64", "after": "root.d"}
    first = cache.keep_layer("k", _layer(tmp_path, "b1", {"f": b"1"}), desc)
    other = treecache.TreeCache(tmp_path, layered=True)
    second_upper = _layer(tmp_path, "b2", {"f": b"2"})
    assert other.keep_layer("k", second_upper, desc) == first
    # the other build's own directory stays where it was (its build dir removes it)
    assert second_upper.is_dir() and (first / "f").read_bytes() == b"1"
    cache.release()
    other.release()


def test_a_layer_from_another_filesystem_is_copied_in_the_background(tmp_path: Path) -> None:
    other_fs = _other_filesystem(tmp_path)
    if other_fs is None:
        pytest.skip("no writable /dev/shm on another filesystem than the test's tmp dir")
    build = Path(tempfile.mkdtemp(dir=other_fs, prefix="dibpy-test-"))
    try:
        upper = _layer(build, "1/upper", {"usr/bin/tool": b"#!/bin/sh\n", "etc/a": b"a"})
        os.symlink("tool", upper / "usr" / "bin" / "alias")
        (upper / "usr" / "bin" / "tool").chmod(0o755)
        cache = treecache.TreeCache(tmp_path, layered=True)
        desc = {"elements": "a", "arch": "amd64", "after": "install.d"}
        # the build goes on from its own copy; the cache's is written meanwhile
        assert cache.keep_layer("k2", upper, desc) == upper
        cache.wait()
        kept = tmp_path / "dibpy-trees" / "k2.layer"
        assert (kept / "etc" / "a").read_bytes() == b"a"
        assert os.readlink(kept / "usr" / "bin" / "alias") == "tool"
        assert os.access(kept / "usr" / "bin" / "tool", os.X_OK)
        assert not list((tmp_path / "dibpy-trees").glob(".*"))
        assert [e.key for e in treecache.entries(tmp_path)] == ["k2"]
    finally:
        shutil.rmtree(build)


def test_pruning_keeps_the_newest_layers_and_those_in_use(tmp_path: Path) -> None:
    cache = treecache.TreeCache(tmp_path, layered=True)
    desc = {"elements": "a", "arch": "amd64", "after": "root.d"}
    for n in range(treecache.KEEP_PER_SET + 2):
        cache.keep_layer(f"k{n}", _layer(tmp_path, f"u{n}", {"f": b"%d" % n}), desc)
        if n == 0:
            continue
        # only the first is still in use by this build
        fd = cache._held.pop(f"k{n}")
        os.close(fd)
    left = sorted(e.key for e in treecache.entries(tmp_path))
    assert left == ["k0", "k2", "k3", "k4"], left
    cache.release()


def test_a_layer_that_cannot_be_kept_stays_the_builds_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full cache disk while the metadata is written: the build goes on from its own
    directory, with a warning, and leaves nothing half-written in the cache."""
    cache = treecache.TreeCache(tmp_path, layered=True)
    upper = _layer(tmp_path, "build/1/upper", {"etc/x": b"x"})

    def full(*_: object) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "_publish", full)
    desc = {"elements": "a", "arch": "amd64", "after": "root.d"}
    assert cache.keep_layer("k", upper, desc) == upper
    assert (upper / "etc" / "x").read_bytes() == b"x"
    assert list((tmp_path / "dibpy-trees").iterdir()) == []
    # and a layer another build kept first leaves ours in the build directory too
    monkeypatch.undo()
    first = treecache.TreeCache(tmp_path, layered=True)
    kept = first.keep_layer("k", _layer(tmp_path, "other/upper", {"f": b"1"}), desc)
    # it looked before the other build kept it
    looks = iter([False])
    monkeypatch.setattr(cache, "has", lambda key: next(looks, True))
    assert cache.keep_layer("k", upper, desc) == kept and upper.is_dir()
    assert not list((tmp_path / "dibpy-trees").glob(".*"))
    first.release()
    cache.release()
