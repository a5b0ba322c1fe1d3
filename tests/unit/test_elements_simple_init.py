"""simple-init's install types, packages and environment, without root: the package
lists it asks for on each family, the package install type's hook, its environment.d
defaults, and source-repositories skipping glean's checkout when no hook uses it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.test_elements_packages import hook_tree, lists, run_extra_data

ELEMENT = REPO / "elements" / "simple-init"
ENVD = ELEMENT / "environment.d" / "15-simple-init.bash"


def env_after(**env: str) -> subprocess.CompletedProcess[str]:
    """Source the element's environment.d as the hooks do (set -eu) and print the result."""
    script = (
        f'set -eu -o pipefail; . "{ENVD}"; '
        'echo "nm=$DIB_SIMPLE_INIT_NETWORKMANAGER glean=${DIB_INSTALLTYPE_glean:-unset}"'
    )
    return subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("env", "out"),
    [
        ({"DISTRO_NAME": "debian"}, "nm=0 glean=package"),
        ({"DISTRO_NAME": "centos", "DIB_RELEASE": "9-stream"}, "nm=1 glean=package"),
        ({"DISTRO_NAME": "ubuntu", "DIB_SIMPLE_INIT_NETWORKMANAGER": "1"}, "nm=1 glean=package"),
        ({"DISTRO_NAME": "debian", "DIB_INSTALLTYPE_simple_init": "repo"}, "nm=0 glean=unset"),
        ({"DISTRO_NAME": "debian", "DIB_DEFAULT_INSTALLTYPE": "repo"}, "nm=0 glean=unset"),
        (
            {"DISTRO_NAME": "debian", "DIB_INSTALLTYPE_glean": "source"},
            "nm=0 glean=source",
        ),
        (
            {"DISTRO_NAME": "rocky", "DIB_RELEASE": "7", "DIB_SIMPLE_INIT_NETWORKMANAGER": "0"},
            "nm=0 glean=package",
        ),
    ],
)  # fmt: skip
def test_environment_defaults(env: dict[str, str], out: str) -> None:
    r = env_after(**env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == out


@pytest.mark.parametrize(
    "env",
    [
        {"DISTRO_NAME": "fedora", "DIB_RELEASE": "40"},
        {"DISTRO_NAME": "rocky", "DIB_RELEASE": "9"},
        {"DISTRO_NAME": "almalinux", "DIB_RELEASE": "8.10"},
    ],
)
def test_networkmanager_off_is_refused_where_there_are_no_scripts(env: dict[str, str]) -> None:
    r = env_after(DIB_SIMPLE_INIT_NETWORKMANAGER="0", **env)
    assert r.returncode != 0
    assert r.stderr.startswith("simple-init: DIB_SIMPLE_INIT_NETWORKMANAGER=0 is not possible")


def squashed(tmp_path: Path, **env: str) -> list[str]:
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, {"simple-init": ELEMENT}, **env)
    assert r.returncode == 0, r.stderr
    return lists(tree)["install.d.install"]


def test_packages_per_family_and_networkmanager(tmp_path: Path) -> None:
    deb = squashed(tmp_path / "d", DIB_SIMPLE_INIT_NETWORKMANAGER="0")
    assert sorted(deb) == ["ifupdown", "isc-dhcp-client", "net-tools"]
    deb_nm = squashed(tmp_path / "dn", DIB_SIMPLE_INIT_NETWORKMANAGER="1")
    assert "network-manager" in deb_nm
    el = squashed(
        tmp_path / "c",
        DISTRO_NAME="centos",
        DIB_RELEASE="9-stream",
        DIB_SIMPLE_INIT_NETWORKMANAGER="1",
        DIB_INSTALLTYPE_simple_init="package",
    )
    assert sorted(el) == ["NetworkManager", "dhclient", "net-tools", "python3-glean"]
    suse = squashed(
        tmp_path / "s",
        DISTRO_NAME="opensuse",
        DIB_RELEASE="15.6",
        DIB_SIMPLE_INIT_NETWORKMANAGER="0",
    )
    assert sorted(suse) == ["dhcp-client", "net-tools", "wicked-service"]
    # the glean package only for the package install type, and never on Debian
    deb_pkg = squashed(
        tmp_path / "dp", DIB_SIMPLE_INIT_NETWORKMANAGER="0", DIB_INSTALLTYPE_simple_init="package"
    )
    assert sorted(deb_pkg) == sorted(deb)


def test_cloud_init_is_removed_and_told_to_probe_nothing(tmp_path: Path) -> None:
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, {"simple-init": ELEMENT}, DIB_SIMPLE_INIT_NETWORKMANAGER="0")
    assert r.returncode == 0, r.stderr
    removed = [v for k, v in lists(tree).items() if k.endswith(".uninstall") and v]
    assert removed == [["cloud-init"]]
    envd = ELEMENT / "environment.d" / "50-simple-init-no-cloud-init.bash"
    r = subprocess.run(
        ["bash", "-c", f'set -eu; DIB_CLOUD_INIT_DATASOURCES=ConfigDrive; . "{envd}"; '
         'echo "$DIB_CLOUD_INIT_DATASOURCES"'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.stdout.strip() == "None", r.stderr


PACKAGE_HOOK = ELEMENT / "install.d/simple-init-package-install/40-glean"


def test_package_install_type_without_a_package_says_so(tmp_path: Path) -> None:
    r = subprocess.run(
        ["/bin/bash", str(PACKAGE_HOOK)],
        env={"PATH": str(tmp_path), "DISTRO_NAME": "debian"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "debian has no glean package that provides glean-install" in r.stderr
    fake = tmp_path / "glean-install"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    r = subprocess.run(
        ["/bin/bash", str(PACKAGE_HOOK)],
        env={"PATH": str(tmp_path), "DISTRO_NAME": "centos"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert f"({fake})" in r.stdout


SOURCE_REPOS = REPO / "elements/source-repositories/extra-data.d/98-source-repositories"


def test_source_repositories_fetches_only_for_the_source_install_type(tmp_path: Path) -> None:
    """The element's own source-repository file, with an unreachable location: skipped
    (so nothing is fetched) unless glean's install type is source."""
    root = tmp_path / "root"
    hooks = tmp_path / "hooks"
    (hooks / "bin").mkdir(parents=True)
    root.mkdir()
    array = f'get_image_element_array() {{ echo "[simple-init]={ELEMENT}"; }}'
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TARGET_ROOT": str(root),
        "TMP_HOOKS_PATH": str(hooks),
        "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
        "DIB_REPOLOCATION_glean": str(tmp_path / "no-such-repo"),
    }
    script = f'{array}; export -f get_image_element_array; bash "{SOURCE_REPOS}"'

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script], env={**base, **env}, capture_output=True, text=True
        )

    for env in ({"DIB_INSTALLTYPE_glean": "package"}, {"DIB_DEFAULT_INSTALLTYPE": "package"}):
        r = run(**env)
        assert r.returncode == 0, r.stderr
        assert "glean: install type package, not source; not fetched" in r.stdout
    manifest = root / "etc/dib-manifests/dib-source-repositories"
    assert manifest.read_text() == ""
    r = run(DIB_DEFAULT_INSTALLTYPE="package", DIB_INSTALLTYPE_glean="source")
    assert r.returncode != 0 and "no-such-repo" in r.stderr
