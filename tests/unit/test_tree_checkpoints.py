"""The tree cache's checkpoints: each is keyed by its predecessor and its own phases' hooks,
so a change re-runs the build from the phase it is in, and nothing earlier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dibpy import treecache
from dibpy.config import parse_break
from dibpy.elements.model import PHASE_TABLE, PHASES, Element, tree_segments

AFTER = ["root.d", "pre-install.d", "install.d", "post-install.d", "post-root.d"]


def _hook(el: Path, phase: str, name: str, body: str) -> Path:
    p = el / phase / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"#!/bin/bash\n{body}\n")
    p.chmod(0o755)
    return p


@pytest.fixture
def elements(tmp_path: Path) -> list[Element]:
    os_el = tmp_path / "my-os"
    _hook(os_el, "root.d", "10-root", "echo root")
    (os_el / "environment.d").mkdir()
    (os_el / "environment.d" / "10-os.bash").write_text("export MY_OS=1\n")
    user = tmp_path / "bar"
    _hook(user, "install.d", "50-inst", "echo install")
    _hook(user, "post-install.d", "50-foo", "echo foo")
    _hook(user, "post-root.d", "50-host", "echo host")
    _hook(user, "finalise.d", "50-fin", "echo fin")
    return [Element("my-os", os_el), Element("bar", user)]


def _keys(elements: list[Element], env: dict[str, str] | None = None, pkgs: str = "") -> list[str]:
    inputs = treecache.tree_inputs(elements, {"arch": "amd64"}, env or {}, Path("/nonexistent"))
    chain = treecache.checkpoints(inputs, elements, pkgs)
    assert [c.after for c in chain] == AFTER
    return [c.key for c in chain]


def test_the_phase_table_is_the_one_order() -> None:
    assert PHASES[0] == "root.d" and PHASES[-1] == "cleanup.d"
    assert [s[-1].name for s in tree_segments()] == AFTER
    assert [p.name for s in tree_segments() for p in s] == [
        p.name for p in PHASE_TABLE if p.stage == "tree"
    ]


def test_a_post_install_hook_changes_only_the_keys_from_post_install(
    elements: list[Element],
) -> None:
    before = _keys(elements)
    assert len(set(before)) == 4
    hook = elements[1].path / "post-install.d" / "50-foo"
    hook.write_text(hook.read_text() + "echo changed\n")
    after = _keys(elements)
    assert after[:3] == before[:3]
    assert after[3] != before[3] and after[4] != before[4]
    # and the miss names the hook
    inputs = treecache.tree_inputs(elements, {"arch": "amd64"}, {}, Path("/nonexistent"))
    new = treecache.checkpoints(inputs, elements)[3].inputs
    hook.write_text("#!/bin/bash\necho foo\n")
    old = treecache.checkpoints(inputs, elements)[3].inputs
    assert treecache.describe_changes(old, new) == [
        "post-install.d hook 50-foo of element bar changed"
    ]


@pytest.mark.parametrize(
    ("phase", "first_changed"),
    [
        ("root.d", 0),
        ("extra-data.d", 1),
        ("pre-install.d", 1),
        ("install.d", 2),
        ("post-root.d", 4),
    ],
)
def test_a_hook_changes_the_keys_from_its_checkpoint_on(
    elements: list[Element], phase: str, first_changed: int
) -> None:
    before = _keys(elements)
    _hook(elements[1].path, phase, "60-new", "echo new")
    after = _keys(elements)
    assert after[:first_changed] == before[:first_changed]
    assert all(a != b for a, b in zip(after[first_changed:], before[first_changed:], strict=True))


def test_what_runs_after_the_tree_changes_no_key(elements: list[Element]) -> None:
    before = _keys(elements)
    fin = elements[1].path / "finalise.d" / "50-fin"
    fin.write_text(fin.read_text() + "echo changed\n")
    _hook(elements[1].path, "cleanup.d", "50-clean", "echo clean")
    assert _keys(elements) == before


def test_inputs_every_hook_sees_change_every_key(elements: list[Element]) -> None:
    before = _keys(elements)
    assert all(a != b for a, b in zip(_keys(elements, {"IPA_X": "1"}), before, strict=True))
    (elements[0].path / "environment.d" / "10-os.bash").write_text("export MY_OS=2\n")
    assert all(a != b for a, b in zip(_keys(elements), before, strict=True))


def test_packages_count_from_the_phase_they_are_installed_before(
    elements: list[Element],
) -> None:
    before = _keys(elements)
    after = _keys(elements, pkgs="vim")
    assert after[:3] == before[:3] and after[3] != before[3] and after[4] != before[4]


def test_a_checkpoint_with_no_hooks_is_its_predecessor(tmp_path: Path) -> None:
    el = tmp_path / "only-root"
    _hook(el, "root.d", "10-root", "echo root")
    keys = _keys([Element("only-root", el)])
    # nothing runs after root.d: every later checkpoint is the same tree, saved once
    assert len(set(keys)) == 1


def test_break_names_a_real_phase() -> None:
    assert parse_break("before-install,after-post-root,after-error") == (
        "before-install",
        "after-post-root",
        "after-error",
    )
    with pytest.raises(ValueError, match="'instal' is not a phase"):
        parse_break("before-instal")
    with pytest.raises(ValueError, match="is not before-PHASE"):
        parse_break("during-install")


def test_a_snapshot_keeps_the_tree_as_it_was(tmp_path: Path) -> None:
    """The build changes the tree as soon as snapshot_in_background returns; the entry
    holds the tree as it was, and no partial file is left."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "phase").write_text("after install.d\n")
    scratch = tmp_path / "build"
    scratch.mkdir()
    cache = treecache.TreeCache(tmp_path / "cache")
    describe = {
        "elements": "a b",
        "arch": "amd64",
        "after": "install.d",
        "parent": "p",
        "inputs": {"install.d hook 50-x of element b": "1"},
    }
    cache.snapshot_in_background("k" * 64, tree, describe, scratch)
    (tree / "etc" / "phase").write_text("during post-install.d\n")
    (tree / "etc" / "new").write_text("new\n")
    cache.wait()
    assert not list(scratch.iterdir()), "the snapshot is removed once compressed"
    trees = tmp_path / "cache" / "dibpy-trees"
    assert not list(trees.glob(".*")), "no partial file"
    hit = cache.lookup("k" * 64)
    assert hit is not None
    out = tmp_path / "restored"
    out.mkdir()
    cache.restore(hit, out)
    assert (out / "etc" / "phase").read_text() == "after install.d\n"
    assert not (out / "etc" / "new").exists()
    [entry] = treecache.entries(tmp_path / "cache")
    assert (entry.after, entry.parent) == ("install.d", "p")
    assert cache.newest_inputs("a b", "amd64", "install.d") == {
        "install.d hook 50-x of element b": "1"
    }
    assert cache.newest_inputs("a b", "amd64", "post-root.d") is None


def test_the_room_check_weighs_the_tree_not_the_whole_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nearly full disk with room for this tree keeps the checkpoint; a disk
    without room for the tree plus a margin for the build's next phases does not."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "big").write_bytes(b"x" * 4096)
    scratch = tmp_path / "build"
    scratch.mkdir()
    real = os.statvfs
    free_bytes = {"n": 2 << 30}

    class Full:
        f_frsize = 4096
        f_blocks = 1 << 40  # a huge disk, nearly all of it used by others
        f_bfree = free_bytes["n"] // 4096

    def fake_statvfs(path: object) -> object:
        if Path(str(path)) == scratch:
            full = Full()
            full.f_bfree = free_bytes["n"] // 4096
            full.f_bavail = full.f_bfree  # type: ignore[attr-defined]
            return full
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(treecache.os, "statvfs", fake_statvfs)
    describe = {"elements": "a", "arch": "amd64", "after": "install.d", "parent": "p"}
    cache = treecache.TreeCache(tmp_path / "cache")
    cache.snapshot_in_background("a" * 64, tree, describe, scratch)
    cache.wait()
    assert cache.lookup("a" * 64) is not None, "2 GiB free is room for a 4 KiB tree"
    free_bytes["n"] = 512 << 20
    cache.snapshot_in_background("b" * 64, tree, describe, scratch)
    cache.wait()
    assert cache.lookup("b" * 64) is None, "less than the 1 GiB margin: not kept"
