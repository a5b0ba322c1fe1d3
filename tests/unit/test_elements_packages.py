"""package-installs squash and pkg-map resolution of the built-in elements (no root).

The real hook scripts run (through bash, with the environment a build gives them) on
sample element trees; the tests check what they write into the hook tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

ELEMENTS = REPO / "elements"


def make_element(root: Path, name: str, files: dict[str, str]) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for rel, text in files.items():
        (d / rel).write_text(text)
    return d


def hook_tree(tmp_path: Path) -> Path:
    """A hook tree holding the pkg-map and package-installs tools and hooks."""
    tree = tmp_path / "hooks"
    for el in ("pkg-map", "package-installs"):
        shutil.copytree(ELEMENTS / el, tree, dirs_exist_ok=True, ignore=lambda *_: ["README.rst"])
    return tree


def run_extra_data(
    tree: Path, elements: dict[str, Path], **env: str
) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": os.environ["PATH"],
        "TMP_HOOKS_PATH": str(tree),
        "IMAGE_ELEMENT_YAML": "\n".join(f"{n}: {p}" for n, p in elements.items()),
        "DIB_PYTHON_EXEC": sys.executable,
        "DISTRO_NAME": "debian",
        "DIB_RELEASE": "bookworm",
        "ARCH": "amd64",
        **env,
    }
    for hook in ("10-pkg-map", "99-package-installs-squash"):
        r = subprocess.run(
            ["bash", str(tree / "extra-data.d" / hook)], env=full, capture_output=True, text=True
        )
        if r.returncode != 0:
            return r
    return r


def lists(tree: Path) -> dict[str, list[str]]:
    d = tree / "package-installs"
    return {p.name: p.read_text().split() for p in sorted(d.iterdir())}


SAMPLE_A = """\
curl:
grub-pc:
  arch: amd64
grub-efi-arm64:
  arch: arm64, ppc64le
dmidecode:
  not-arch: ppc64le
early:
  phase: pre-install.d
gcc:
  build-only: true
nano:
  uninstall: true
only-package:
  installtype: package
both-ways:
  - when: FLAVOUR=big
    phase: post-install.d
  - when: FLAVOUR!=big
generic-name:
dropped:
"""

PKGMAP_A = json.dumps(
    {
        "release": {"debian": {"bookworm": {"generic-name": "bookworm-name"}}},
        "distro": {"debian": {"generic-name": "debian-name", "curl": "curl libcurl4"}},
        "family": {"debian": {"dropped": ""}},
        "default": {"generic-name": "default-name"},
    }
)


def test_squash_applies_every_key_and_maps_names(tmp_path: Path) -> None:
    a = make_element(
        tmp_path / "els", "el-a", {"package-installs.yaml": SAMPLE_A, "pkg-map": PKGMAP_A}
    )
    b = make_element(
        tmp_path / "els", "el-b", {"package-installs.json": '{"curl": null, "zsh": {}}'}
    )
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, {"el-a": a, "el-b": b}, FLAVOUR="big")
    assert r.returncode == 0, r.stderr
    got = lists(tree)
    # one list per phase for all elements: curl de-duplicated, mapped through el-a's map
    assert got["install.d.install"] == [
        "curl",
        "libcurl4",
        "grub-pc",
        "dmidecode",
        "gcc",
        "bookworm-name",
        "zsh",
    ]
    assert got["pre-install.d.install"] == ["early"]
    assert got["post-install.d.install"] == ["both-ways"]
    assert got["install.d.uninstall"] == ["nano"]
    assert got["post-install.d.uninstall"] == ["gcc"]
    # DIB's squashed format, names unmapped, with the declaring element
    squashed = json.loads((tree / "package-installs.json").read_text())
    assert ["curl", "el-a"] in squashed["install.d"]["install"]
    assert ["curl", "el-b"] in squashed["install.d"]["install"]
    assert ["nano", "el-a"] in squashed["install.d"]["uninstall"]


def test_squash_other_arch_installtype_and_when(tmp_path: Path) -> None:
    a = make_element(
        tmp_path / "els", "el-a", {"package-installs.yaml": SAMPLE_A, "pkg-map": PKGMAP_A}
    )
    tree = hook_tree(tmp_path)
    r = run_extra_data(
        tree,
        {"el-a": a},
        ARCH="ppc64le",
        FLAVOUR="small",
        DIB_DEFAULT_INSTALLTYPE="package",
        DIB_RELEASE="trixie",
    )
    assert r.returncode == 0, r.stderr
    inst = lists(tree)["install.d.install"]
    assert "grub-efi-arm64" in inst and "grub-pc" not in inst and "dmidecode" not in inst
    assert "only-package" in inst and "both-ways" in inst
    # no release entry for trixie: the distro entry wins
    assert "debian-name" in inst and "bookworm-name" not in inst
    assert "dropped" not in inst
    assert lists(tree)["post-install.d.install"] == []


def test_installtype_per_element_overrides_default(tmp_path: Path) -> None:
    a = make_element(
        tmp_path / "els", "el-a", {"package-installs.yaml": "x:\n  installtype: source\n"}
    )
    tree = hook_tree(tmp_path)
    r = run_extra_data(
        tree, {"el-a": a}, DIB_DEFAULT_INSTALLTYPE="source", DIB_INSTALLTYPE_el_a="package"
    )
    assert r.returncode == 0, r.stderr
    assert lists(tree)["install.d.install"] == []


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("foo:\n  when: UNSET_VAR=1\n", {}, "UNSET_VAR, which is not set"),
        ("foo:\n  colour: red\n", {}, "unknown key(s) colour"),
        ("foo:\n  phase: finalise.d\n", {}, "phase 'finalise.d'"),
        ("foo:\n  arch: amd64\n  not-arch: arm64\n", {}, "'arch' and 'not-arch'"),
        ("foo: [1, 2]\n", {}, "expected nothing, a mapping or a list of mappings"),
        ("- foo\n", {}, "must be a mapping of package names"),
        ("foo: [\n", {}, "cannot parse"),
    ],
)
def test_squash_errors_name_file_and_package(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    a = make_element(tmp_path / "els", "el-a", {"package-installs.yaml": text})
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, {"el-a": a}, **env)
    assert r.returncode == 1
    assert message in r.stderr
    assert str(a / "package-installs.yaml") in r.stderr


def test_bad_pkg_map_is_named(tmp_path: Path) -> None:
    a = make_element(tmp_path / "els", "el-a", {"pkg-map": '{"distros": {}}'})
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, {"el-a": a})
    assert r.returncode == 1
    assert "unknown section(s) distros" in r.stderr and str(a / "pkg-map") in r.stderr


def run_pkg_map(tree: Path, *args: str, **more: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "DIB_PKG_MAP_DIR": str(tree / "pkg-map"), **more}
    return subprocess.run(
        ["bash", str(tree / "bin" / "pkg-map"), *args], env=env, capture_output=True, text=True
    )


def test_pkg_map_command_resolves_release_distro_family_default(tmp_path: Path) -> None:
    a = make_element(tmp_path / "els", "el-a", {"pkg-map": PKGMAP_A})
    tree = hook_tree(tmp_path)
    assert run_extra_data(tree, {"el-a": a}).returncode == 0
    r = run_pkg_map(tree, "--element", "el-a", "generic-name", "curl", "dropped")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["bookworm-name", "curl", "libcurl4"]
    # unknown names: an error, unless --missing-ok
    r = run_pkg_map(tree, "--element", "el-a", "unknown")
    assert r.returncode == 1 and "unknown is not in the pkg-map of element el-a" in r.stderr
    r = run_pkg_map(tree, "--element", "el-a", "--missing-ok", "unknown")
    assert r.stdout.split() == ["unknown"]
    r = run_pkg_map(tree, "--element", "no-such", "x")
    assert r.returncode == 2 and "has no pkg-map" in r.stderr
    # ubuntu is in the debian family: the family entry applies, not the debian distro one
    tree2 = hook_tree(tmp_path / "u")
    assert run_extra_data(tree2, {"el-a": a}, DISTRO_NAME="ubuntu").returncode == 0
    r = run_pkg_map(tree2, "--element", "el-a", "generic-name", "dropped")
    assert r.stdout.split() == ["default-name"]


def test_builtin_package_lists_squash_for_a_debian_vm(tmp_path: Path) -> None:
    """The real elements' package-installs files: one list, the right grub per layout."""
    names = [
        "debian-minimal", "debian", "openssh-server", "bootloader", "devuser",
        "dhcp-all-interfaces", "growroot",
    ]  # fmt: skip
    els = {n: ELEMENTS / n for n in names}
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, els, DIB_BLOCK_DEVICE="mbr")
    assert r.returncode == 0, r.stderr
    inst = lists(tree)["install.d.install"]
    for p in ("linux-image-amd64", "systemd-sysv", "grub-pc", "openssh-server", "cloud-init"):
        assert p in inst
    assert "grub-efi-amd64" not in inst and "linux-image-arm64" not in inst
    tree = hook_tree(tmp_path / "efi")
    assert run_extra_data(tree, els, DIB_BLOCK_DEVICE="efi").returncode == 0
    inst = lists(tree)["install.d.install"]
    assert "grub-efi-amd64" in inst and "grub-pc-bin" in inst and "grub-pc" not in inst
    # dhcp-all-interfaces: ifupdown and dhclient (pkg-map), as diskimage-builder's
    assert {"ifupdown", "isc-dhcp-client", "ndisc6"} <= set(inst)
    assert "systemd-resolved" not in inst


def test_legacy_package_installs_files_are_installed_in_their_phase(tmp_path: Path) -> None:
    """diskimage-builder's deprecated <phase>/package-installs-<element> lists."""
    old = make_element(tmp_path / "els", "old-style", {})
    (old / "install.d").mkdir()
    (old / "install.d" / "package-installs-old-style").write_text(
        "# a comment\nvim\n\n-nano\nless  # trailing\n"
    )
    (old / "pre-install.d").mkdir()
    (old / "pre-install.d" / "package-installs-old-style").write_text("early-pkg\n")
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, {"old-style": old})
    assert r.returncode == 0, r.stderr
    got = lists(tree)
    assert got["install.d.install"] == ["vim", "less"]
    assert got["pre-install.d.install"] == ["early-pkg"]
    assert got["post-install.d.uninstall"] == ["nano"]


def test_every_shipped_package_installs_file_passes_the_plan_time_check() -> None:
    from dibpy.elements import package_installs
    from dibpy.elements.model import Element

    root = Path(__file__).resolve().parents[2] / "elements"
    shipped = [Element(d.name, d) for d in sorted(root.iterdir()) if d.is_dir()]
    assert sum(e.package_installs_file is not None for e in shipped) > 5
    assert package_installs.problems(shipped) == []


def test_pkg_map_for_another_distro_release_or_file(tmp_path: Path) -> None:
    """--distro/--release resolve the element's map for another distribution, --pkg-map
    reads a given file; the maps are also copied into the image's /usr/share/pkg-map."""
    a = make_element(tmp_path / "els", "el-a", {"pkg-map": PKGMAP_A})
    tree = hook_tree(tmp_path)
    image = tmp_path / "image"
    image.mkdir()
    assert run_extra_data(tree, {"el-a": a}, TARGET_ROOT=str(image)).returncode == 0
    assert json.loads((image / "usr/share/pkg-map/el-a").read_text()) == json.loads(PKGMAP_A)
    assert not list((image / "usr/share/pkg-map").glob("*.resolved"))

    def pm(*args: str) -> subprocess.CompletedProcess[str]:
        # as in the chroot: the build's distro and release in the environment
        return run_pkg_map(tree, *args, DISTRO_NAME="debian", DIB_RELEASE="bookworm")

    # the build's own distro (debian/bookworm) from the flat map, no python needed
    r = pm("--element", "el-a", "generic-name")
    assert r.stdout.split() == ["bookworm-name"], r.stderr
    # another release of the same distro: the debian distro entry, not the bookworm one
    r = pm("--element", "el-a", "--release", "trixie", "generic-name")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["debian-name"]
    # another distro in the debian family
    r = pm("--element=el-a", "--distro=ubuntu", "--prefix", "P:", "generic-name")
    assert r.stdout.split() == ["P:default-name"]
    r = pm("--pkg-map", str(a / "pkg-map"), "--distro", "ubuntu", "dropped")
    assert r.returncode == 0 and r.stdout == ""
    r = pm("--element", "el-a", "--distro", "fedora", "nope")
    assert r.returncode == 1 and "'nope' is not in the pkg-map" in r.stderr
    r = pm("--element", "no-such", "--distro", "fedora", "x")
    assert r.returncode == 2 and "no pkg-map for element no-such" in r.stderr
    r = pm("--element", "el-a", "--pkg-map", str(a / "pkg-map"), "x")
    assert r.returncode == 1 and "not both" in r.stderr
