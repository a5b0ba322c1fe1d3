"""element-os: the image's operating system, and what a non-Linux image refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from dibpy.build import image_os_family
from dibpy.elements.model import Element
from dibpy.errors import ConfigError, MultiError


def element(
    tmp_path: Path, name: str, os: str | None = None, hooks: tuple[str, ...] = ()
) -> Element:
    d = tmp_path / name
    d.mkdir()
    if os is not None:
        (d / "element-os").write_text(f"# the image's OS\n{os}\n")
    for h in hooks:
        (d / h).parent.mkdir(parents=True, exist_ok=True)
        (d / h).write_text("#!/bin/sh\n")
    return Element(name, d)


def test_linux_unless_an_element_says_otherwise(tmp_path: Path) -> None:
    plain = element(tmp_path, "plain", hooks=("install.d/10-x",))
    assert image_os_family([plain], ["vim"]) == "linux"
    assert image_os_family([plain, element(tmp_path, "deb", "Linux")]) == "linux"
    assert image_os_family([element(tmp_path, "win", "Windows")]) == "windows"


def test_a_windows_image_names_every_chroot_hook_and_packages(tmp_path: Path) -> None:
    els = [
        element(tmp_path, "win", "windows", hooks=("root.d/10-copy", "pre-finalise.d/1-ok")),
        element(tmp_path, "a", hooks=("install.d/10-apt", "finalise.d/99-x", "cleanup.d/1-ok")),
    ]
    with pytest.raises(MultiError) as e:
        image_os_family(els, ["vim"])
    assert e.value.problems == [
        "element a: install.d/10-apt runs in a chroot, but the image is windows "
        "(element-os of win): it has none",
        "element a: finalise.d/99-x runs in a chroot, but the image is windows "
        "(element-os of win): it has none",
        "-p vim: a windows image has no package manager",
    ]


def test_elements_that_disagree_are_named(tmp_path: Path) -> None:
    els = [element(tmp_path, "win", "windows"), element(tmp_path, "deb", "linux")]
    with pytest.raises(ConfigError, match=r"disagree .*\(deb: linux, win: windows\)"):
        image_os_family(els)
