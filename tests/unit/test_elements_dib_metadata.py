"""Every element dibpy shares a name with diskimage-builder has its element-deps and
element-provides (diskimage-builder's 3.43 release as the oracle), except the
differences listed below, each with the reason it is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO

ELEMENTS = REPO / "elements"

# (element, file) -> (names only dibpy lists, names only diskimage-builder lists, why)
DIFFERENT: dict[tuple[str, str], tuple[set[str], set[str], str]] = {
    ("base", "element-deps"): (
        {"install-bin", "manifests", "package-installs", "sysprep"},
        set(),
        "the four reach every diskimage-builder build through its distribution elements, "
        "and base names them so that a third-party distribution element gets them too",
    ),
    ("dracut-ramdisk", "element-deps"): (
        {"package-installs"},
        set(),
        "it installs dracut from its package-installs.yaml, where diskimage-builder's "
        "builds dracut from a source checkout",
    ),
    ("block-device-efi-lvm", "element-deps"): (
        {"package-installs"},
        set(),
        "it has a package-installs.yaml (lvm2); saying so keeps it right under -n",
    ),
    ("yum", "element-deps"): (
        {"package-installs"},
        set(),
        "package-installs is what calls yum's install-packages",
    ),
    ("vm", "element-deps"): (
        set(),
        {"block-device"},
        "element-info resolves `vm` alone; disk-image-create adds block-device-mbr itself",
    ),
}


def names(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    lines = (ln.split("#", 1)[0] for ln in path.read_text().splitlines())
    return {w for ln in lines for w in ln.split()}


def shared_elements() -> list[str]:
    from tests.dibref import dib_elements

    dib = dib_elements()
    # obsolete stubs keep only the name: they are meant to have none of its metadata
    return sorted(
        p.name
        for p in ELEMENTS.iterdir()
        if (dib / p.name / "README.rst").is_file() and not (p / "element-obsolete").exists()
    )


@pytest.mark.parametrize("meta", ["element-deps", "element-provides"])
def test_shared_elements_have_diskimage_builders_deps_and_provides(meta: str) -> None:
    from tests.dibref import dib_elements

    dib = dib_elements()
    shared = shared_elements()
    assert len(shared) > 70, shared
    wrong = []
    for name in shared:
        ours, theirs = names(ELEMENTS / name / meta), names(dib / name / meta)
        got = (ours - theirs, theirs - ours)
        want = DIFFERENT.get((name, meta), (set(), set(), ""))[:2]
        if got != want:
            wrong.append(f"{name}/{meta}: only ours {sorted(got[0])}, only DIB {sorted(got[1])}")
    assert not wrong, "\n".join(wrong)


def test_every_listed_difference_is_for_a_shared_element() -> None:
    shared = set(shared_elements())
    assert {name for name, _ in DIFFERENT} <= shared
    assert all(why for *_, why in DIFFERENT.values())
