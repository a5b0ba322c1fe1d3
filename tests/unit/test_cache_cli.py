"""dibpy cache list/show/prune/clear and DIB_CACHE_MAX_SIZE: least recently used goes."""

from __future__ import annotations

import json
import os
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
