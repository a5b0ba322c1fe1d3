"""Element resolution (dibpy.elements.resolve) on small synthetic element trees."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dibpy.elements.discovery import ElementLibrary
from dibpy.elements.resolve import default_elements, resolve, to_dot
from dibpy.errors import ElementError, MultiError, did_you_mean


def make(root: Path, name: str, deps: str = "", provides: str = "", conflicts: str = "") -> None:
    d = root / name
    d.mkdir(parents=True)
    for fname, text in (
        ("element-deps", deps),
        ("element-provides", provides),
        ("element-conflicts", conflicts),
    ):
        if text:
            (d / fname).write_text("\n".join(text.split()) + "\n")


@pytest.fixture
def lib(tmp_path: Path) -> ElementLibrary:
    """A small library: an OS, a vm chain, a dependency cycle, a provider of 'editor'."""
    make(tmp_path, "debian-minimal", deps="debootstrap dpkg", provides="operating-system")
    make(tmp_path, "debootstrap", deps="dpkg")
    make(tmp_path, "dpkg", deps="package-installs")
    make(tmp_path, "package-installs")
    make(tmp_path, "base", deps="package-installs")
    make(tmp_path, "vm", deps="bootloader block-device")
    make(tmp_path, "bootloader")
    make(tmp_path, "block-device-mbr", provides="block-device")
    make(tmp_path, "block-device-efi", provides="block-device")
    make(tmp_path, "cyc-a", deps="cyc-b")
    make(tmp_path, "cyc-b", deps="cyc-a")
    make(tmp_path, "vim-editor", provides="editor")
    make(tmp_path, "needs-editor", deps="editor")
    make(tmp_path, "emacs-editor", provides="editor")
    make(tmp_path, "systemd", conflicts="sysvinit")
    make(tmp_path, "sysvinit")
    make(tmp_path, "centos", provides="operating-system")
    return ElementLibrary.from_dirs([("test", tmp_path)])


def names(requested: list[str], lib: ElementLibrary, **kw: bool) -> list[str]:
    return resolve(requested, lib, **kw).names


def test_transitive_deps(lib: ElementLibrary) -> None:
    assert names(["debian-minimal"], lib) == [
        "debian-minimal",
        "debootstrap",
        "dpkg",
        "package-installs",
    ]


def test_provides_satisfies_dep(lib: ElementLibrary) -> None:
    res = resolve(["debian-minimal", "vm", "block-device-efi"], lib)
    assert "block-device-efi" in res.names
    assert "block-device" not in res.names
    assert res.provided_by["block-device"] == "block-device-efi"
    assert res.provided_by["operating-system"] == "debian-minimal"


def test_provider_expanded_after_the_dependent(lib: ElementLibrary) -> None:
    # needs-editor is expanded first; vim-editor, which provides 'editor', comes later
    assert names(["needs-editor", "vim-editor"], lib, require_os=False) == [
        "needs-editor",
        "vim-editor",
    ]


def test_operating_system_required(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["vm", "block-device-mbr"], lib)
    assert e.value.message == "no element provides 'operating-system'"
    assert e.value.hint and "debian-minimal" in e.value.hint


def test_operating_system_check_can_be_skipped(lib: ElementLibrary) -> None:
    assert names(["bootloader"], lib, require_os=False) == ["bootloader"]


def test_operating_system_provided_twice(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError, match="'operating-system' is provided by more than one") as e:
        resolve(["debian-minimal", "centos"], lib)
    assert "centos, debian-minimal" in e.value.message


def test_two_providers(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["vim-editor", "emacs-editor"], lib, require_os=False)
    assert e.value.message == (
        "'editor' is provided by more than one element: emacs-editor, vim-editor"
    )


def test_cycles_are_harmless(lib: ElementLibrary) -> None:
    assert names(["cyc-a"], lib, require_os=False) == ["cyc-a", "cyc-b"]
    assert names(["cyc-b", "cyc-a"], lib, require_os=False) == ["cyc-a", "cyc-b"]


def test_unknown_element_with_did_you_mean(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["debian-minmal"], lib)
    assert e.value.message == ("element 'debian-minmal' not found; did you mean 'debian-minimal'?")
    assert e.value.hint and "ELEMENTS_PATH" in e.value.hint


def test_unknown_element_without_close_match(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["zzzzzz", "debian-minimal"], lib)
    assert e.value.message == "element 'zzzzzz' not found"


def test_unknown_dependency_names_who_wanted_it(tmp_path: Path) -> None:
    make(tmp_path, "os", provides="operating-system", deps="missing-thing")
    lib = ElementLibrary.from_dirs([("test", tmp_path)])
    with pytest.raises(ElementError, match=r"'missing-thing' \(an element-deps entry of os\)"):
        resolve(["os"], lib)


def test_requested_but_provided(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["debian-minimal", "block-device-mbr", "block-device"], lib)
    assert e.value.message == (
        "element 'block-device' was requested, but element block-device-mbr already provides it"
    )


def test_conflicts_name_both(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["sysvinit", "systemd"], lib, require_os=False)
    # declared on one side only, reported once, naming both
    assert e.value.message == "elements 'systemd' and 'sysvinit' conflict (element-conflicts)"


def test_conflicts_declared_on_both_sides_reported_once(tmp_path: Path) -> None:
    make(tmp_path, "a", conflicts="b")
    make(tmp_path, "b", conflicts="a")
    lib = ElementLibrary.from_dirs([("test", tmp_path)])
    with pytest.raises(ElementError) as e:
        resolve(["a", "b"], lib, require_os=False)
    assert not isinstance(e.value, MultiError)
    assert e.value.message == "elements 'a' and 'b' conflict (element-conflicts)"


def test_conflict_only_when_both_present(lib: ElementLibrary) -> None:
    assert names(["systemd"], lib, require_os=False) == ["systemd"]


def test_several_problems_at_once(lib: ElementLibrary) -> None:
    with pytest.raises(MultiError) as e:
        resolve(
            ["debian-minmal", "vim-editor", "emacs-editor", "systemd", "sysvinit", "nothing-x"],
            lib,
        )
    problems = e.value.problems
    assert len(problems) == 4, problems
    assert any("'debian-minmal' not found" in p for p in problems)
    assert any("'nothing-x' not found" in p for p in problems)
    assert any("'editor' is provided by more than one" in p for p in problems)
    assert any("'systemd' and 'sysvinit' conflict" in p for p in problems)
    assert str(e.value).startswith("4 problems:\n  - ")


def test_deterministic_whatever_the_order(lib: ElementLibrary) -> None:
    requested = ["vm", "debian-minimal", "block-device-mbr", "cyc-a"]
    results = {tuple(names(list(p), lib)) for p in itertools.permutations(requested)}
    assert len(results) == 1
    (only,) = results
    assert list(only) == sorted(only)


def test_file_order_and_comments_do_not_matter(tmp_path: Path) -> None:
    make(tmp_path, "os", provides="operating-system")
    (tmp_path / "os" / "element-deps").write_text("# a comment\nzeta  \n\nalpha # why\n")
    make(tmp_path, "zeta")
    make(tmp_path, "alpha")
    lib = ElementLibrary.from_dirs([("test", tmp_path)])
    assert names(["os"], lib) == ["alpha", "os", "zeta"]


def test_graph_and_dot(lib: ElementLibrary) -> None:
    res = resolve(["debian-minimal", "vm", "block-device-mbr"], lib)
    assert res.graph.has_edge("vm", "block-device")
    assert res.graph.edges["block-device-mbr", "block-device"]["kind"] == "provides"
    dot = to_dot(res)
    assert dot.startswith("digraph elements {")
    assert '"vm" -> "bootloader";' in dot
    assert '"block-device-mbr" -> "block-device" [style=dashed, label="provides"];' in dot
    assert '"block-device" [shape=ellipse, style=dashed];' in dot


# ---------------------------------------------------------------- argument defaults


def test_base_added_unless_skip_base() -> None:
    assert default_elements(["debian-minimal"]) == ["base", "debian-minimal"]
    assert default_elements(["debian-minimal"], skip_base=True) == ["debian-minimal"]


def test_vm_gets_block_device_mbr() -> None:
    assert default_elements(["debian-minimal", "vm"]) == [
        "base",
        "debian-minimal",
        "vm",
        "block-device-mbr",
    ]


@pytest.mark.parametrize("arch", ["arm64", "aarch64"])
def test_vm_gets_block_device_efi_on_arm64(arch: str) -> None:
    assert default_elements(["vm"], skip_base=True, arch=arch) == ["vm", "block-device-efi"]


def test_vm_with_a_block_device_gets_nothing_added() -> None:
    assert default_elements(["vm", "block-device-gpt"], skip_base=True) == [
        "vm",
        "block-device-gpt",
    ]


def test_no_vm_no_block_device() -> None:
    assert default_elements(["debian-minimal"], skip_base=True) == ["debian-minimal"]


def test_ramdisk_element_and_no_repeats() -> None:
    assert default_elements(["base", "x", "x"], ramdisk_element="ramdisk") == [
        "base",
        "ramdisk",
        "x",
    ]


def test_defaults_resolve(lib: ElementLibrary) -> None:
    res = resolve(default_elements(["debian-minimal", "vm"]), lib)
    assert "base" in res.names and "block-device-mbr" in res.names


def test_did_you_mean() -> None:
    assert did_you_mean("ubunt", ["ubuntu", "debian"]) == "did you mean 'ubuntu'?"
    assert did_you_mean("qqq", ["ubuntu"]) is None
