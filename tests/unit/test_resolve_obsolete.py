"""Obsolete and renamed elements: an ``element-obsolete`` file makes naming the element
one clear error saying what replaced it; an ``element-renamed`` file makes the old name
stand for the new one, with a warning (doc/elements.md, "Obsolete and renamed elements")."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.elements.discovery import ElementLibrary, builtin_elements_dir, find_library
from dibpy.elements.resolve import resolve
from dibpy.errors import ElementError, MultiError
from tests.conftest import REPO


def make(root: Path, name: str, **files: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    for fname, text in files.items():
        (d / fname.replace("_", "-")).write_text(text + "\n")


@pytest.fixture
def lib(tmp_path: Path) -> ElementLibrary:
    make(tmp_path, "debian-minimal", element_provides="operating-system")
    make(tmp_path, "dracut-regenerate")
    make(tmp_path, "dracut-network", element_obsolete="removed; use dracut-regenerate")
    make(tmp_path, "enable-serial-console")
    make(tmp_path, "serial-console", element_renamed="enable-serial-console")
    make(tmp_path, "older-name", element_renamed="serial-console")
    make(tmp_path, "wants-old", element_deps="serial-console")
    make(tmp_path, "wants-obsolete", element_deps="dracut-network")
    make(tmp_path, "loop-a", element_renamed="loop-b")
    make(tmp_path, "loop-b", element_renamed="loop-a")
    return ElementLibrary.from_dirs([("test", tmp_path)])


def test_obsolete_element_is_one_line_naming_its_replacement(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["debian-minimal", "dracut-network"], lib)
    assert str(e.value) == "element 'dracut-network' is obsolete: removed; use dracut-regenerate"
    assert "\n" not in str(e.value)


def test_obsolete_element_reached_through_element_deps_is_a_warning(
    lib: ElementLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dibpy"):
        res = resolve(["debian-minimal", "wants-obsolete"], lib)
    # in the set, as diskimage-builder's element would be; the stub has no hooks
    assert res.names == ["debian-minimal", "dracut-network", "wants-obsolete"]
    assert [r.getMessage() for r in caplog.records] == [
        "element 'dracut-network' (an element-deps entry of wants-obsolete) is obsolete: "
        "removed; use dracut-regenerate; it does nothing"
    ]


def test_obsolete_element_with_hooks_reached_through_element_deps_is_an_error(
    tmp_path: Path,
) -> None:
    make(tmp_path, "debian-minimal", element_provides="operating-system")
    make(tmp_path, "still-hooked", element_obsolete="gone; use another")
    (tmp_path / "still-hooked" / "install.d").mkdir()
    make(tmp_path, "wants-it", element_deps="still-hooked")
    lib = ElementLibrary.from_dirs([("test", tmp_path)])
    with pytest.raises(ElementError) as e:
        resolve(["debian-minimal", "wants-it"], lib)
    assert str(e.value) == (
        "element 'still-hooked' (an element-deps entry of wants-it) is obsolete: gone; use another"
    )


def test_obsolete_element_named_and_also_a_dependency_is_an_error(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError) as e:
        resolve(["debian-minimal", "wants-obsolete", "dracut-network"], lib)
    assert str(e.value) == "element 'dracut-network' is obsolete: removed; use dracut-regenerate"


def test_obsolete_is_reported_with_the_other_problems(lib: ElementLibrary) -> None:
    with pytest.raises(MultiError) as e:
        resolve(["debian-minimal", "dracut-network", "no-such"], lib)
    text = str(e.value)
    assert "is obsolete" in text and "'no-such'" in text


def test_renamed_element_resolves_to_the_new_one_with_a_warning(
    lib: ElementLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dibpy"):
        res = resolve(["debian-minimal", "serial-console"], lib)
    assert res.names == ["debian-minimal", "enable-serial-console"]
    assert res.renamed == {"serial-console": "enable-serial-console"}
    assert res.requested == ("debian-minimal", "enable-serial-console")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'serial-console'" in warnings[0] and "'enable-serial-console'" in warnings[0]


def test_renames_are_followed_through_element_deps_and_chains(
    lib: ElementLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dibpy"):
        res = resolve(["debian-minimal", "wants-old", "older-name"], lib)
    assert res.names == ["debian-minimal", "enable-serial-console", "wants-old"]
    assert res.renamed == {
        "older-name": "enable-serial-console",
        "serial-console": "enable-serial-console",
    }
    assert any("element-deps entry of wants-old" in r.getMessage() for r in caplog.records)


def test_rename_loop_is_an_error(lib: ElementLibrary) -> None:
    with pytest.raises(ElementError, match="element-renamed files form a loop"):
        resolve(["debian-minimal", "loop-a"], lib)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "element-obsolete is empty"), ("one\ntwo", "element-obsolete has 2 lines")],
)
def test_malformed_metadata_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "element-obsolete").write_text(text)
    lib = ElementLibrary.from_dirs([("test", tmp_path)])
    with pytest.raises(ElementError, match=message):
        resolve(["x"], lib, require_os=False)


# ------------------------------------------------------------------ the shipped stubs


def shipped(kind: str) -> dict[str, str]:
    out = {}
    for d in sorted(builtin_elements_dir().iterdir()):
        f = d / f"element-{kind}"
        if f.is_file():
            out[d.name] = f.read_text().strip()
    return out


def test_shipped_obsolete_stubs() -> None:
    stubs = shipped("obsolete")
    for name in (
        "dracut-network",
        "deploy-baremetal",
        "deploy-kexec",
        "deploy-targetcli",
        "deploy-tgtadm",
        "ubuntu-systemd-container",
        "debian-systemd",
        "debian-upstart",
        "fedora-minimal",
        "hwburnin",
        "oat-client",
    ):
        assert name in stubs, name
    lib = find_library({}, include_packages=False)
    for name, reason in stubs.items():
        el = lib[name]
        # a stub is nothing but its README and the one-line reason: no hooks to run
        assert {p.name for p in el.path.iterdir()} == {"README.rst", "element-obsolete"}, name
        with pytest.raises(ElementError) as e:
            resolve(["debian-minimal", name], lib)
        assert str(e.value) == f"element {name!r} is obsolete: {reason}"


def test_shipped_renames_point_at_shipped_elements() -> None:
    renames = shipped("renamed")
    assert renames.get("serial-console") == "enable-serial-console"
    lib = find_library({}, include_packages=False)
    for old, new in renames.items():
        assert new in lib and lib[new].renamed_to is None and lib[new].obsolete is None, old


def test_disk_image_create_with_obsolete_element_fails_before_anything_runs(
    tmp_path: Path,
) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bin" / "disk-image-create"),
            "-o",
            str(tmp_path / "img"),
            "debian-minimal",
            "deploy-kexec",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "obsolete" in ln]
    assert len(lines) == 1 and "element 'deploy-kexec' is obsolete: " in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_element_info_follows_a_rename() -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bin" / "element-info"),
            "--no-os-check",
            "serial-console",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert [ln.split()[0] for ln in r.stdout.splitlines()] == ["enable-serial-console"]
    assert "renamed to 'enable-serial-console'" in r.stderr
