"""What hooks write into the hook tree, kept with a checkpoint and put back in a fresh one
(the restore itself: tests/integration/test_tree_checkpoints.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dibpy import treecache
from tests.conftest import write


def _tree(root: Path) -> None:
    write(root / "install.d" / "01-a", "#!/bin/bash\n", 0o755)
    write(root / "pkg-map" / "a", "{}\n")
    write(root / "old" / "x", "x\n")


def test_a_fresh_hook_tree_gets_back_what_the_hooks_wrote_and_removed(tmp_path: Path) -> None:
    built = tmp_path / "built"
    _tree(built)
    base = treecache.hooks_manifest(built)
    assert treecache.hooks_delta(built, base) == {}
    # what extra-data.d does: new files and directories, a replaced file, a removal
    write(built / "package-installs.json", '{"install.d": ["vim"]}\n')
    write(built / "conf" / "sub" / "c", "c\n", 0o600)
    os.symlink("c", built / "conf" / "sub" / "link")
    (built / "pkg-map" / "a").unlink()
    write(built / "pkg-map" / "a", '{"b": 1}\n')
    shutil.rmtree(built / "old")
    delta = treecache.hooks_delta(built, base)
    assert delta is not None and delta["removed"] == ["old", "old/x"]
    names = treecache.hooks_delta_names(delta)["written"]
    # (pkg-map itself too: a directory whose entries changed has a new mtime)
    assert set(names) == {"package-installs.json", "conf", "conf/sub", "conf/sub/c",
                          "conf/sub/link", "pkg-map", "pkg-map/a"}  # fmt: skip

    fresh = tmp_path / "fresh"
    _tree(fresh)
    treecache.apply_hooks_delta(fresh, delta)
    assert treecache.hooks_manifest(fresh).keys() == treecache.hooks_manifest(built).keys()
    for rel in ("package-installs.json", "conf/sub/c", "pkg-map/a"):
        assert (fresh / rel).read_text() == (built / rel).read_text()
    assert (fresh / "conf" / "sub" / "c").stat().st_mode & 0o777 == 0o600
    assert os.readlink(fresh / "conf" / "sub" / "link") == "c"
    assert not (fresh / "old").exists()


def test_too_much_written_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = tmp_path / "built"
    _tree(built)
    base = treecache.hooks_manifest(built)
    (built / "big").write_bytes(os.urandom(1 << 16))
    monkeypatch.setattr(treecache, "HOOKS_DELTA_MAX", 1 << 12)
    assert treecache.hooks_delta(built, base) is None
