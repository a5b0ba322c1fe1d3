"""simple-init in a real Debian tree (root, chroot, Debian archive, the package index).

Two trees are built with the real pipeline from the same cached bootstrap, with systemd
in them (glean-install writes systemd units only where it finds systemd):

* ``repo``: ``DIB_INSTALLTYPE_simple_init=repo`` with ``DIB_REPOLOCATION_glean`` pointing
  at a local git repository made here from glean's sdist, with one commit after the
  release tag (so pbr's version and commit show it was this checkout that was
  installed), and ``DIB_SIMPLE_INIT_NO_DHCP_FALLBACK=1``;
* ``source``: the default install type, glean's release from the package index.

A test element leaves the interface files a cloud image comes with, for simple-init to
remove.  The package install type (Debian has no glean package) is checked by the unit
tests of the hook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import (
    chroot_works,
    git,
    snapshot_tree,
    write,
    write_snap_element,
    write_test_debian,
)
from tests.dibref import cache_dir
from tests.integration.test_elements_debian_tree import archive_reachable

GLEAN_VERSION = "1.25.1"


def glean_sdist() -> Path:
    sdists = cache_dir() / "sdists"
    sdists.mkdir(exist_ok=True)
    sdist = sdists / f"glean-{GLEAN_VERSION}.tar.gz"
    if not sdist.exists():
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
             ":all:", f"glean=={GLEAN_VERSION}", "-d", str(sdists)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if r.returncode != 0 or not sdist.exists():
            tail = (r.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            pytest.skip(f"cannot download the glean sdist: {tail}")
    return sdist


def local_glean_repo(where: Path) -> tuple[Path, str]:
    """glean's source as a git repository tagged with its release, as upstream's is, plus
    one commit after the tag; (the repository, that commit)."""
    with tarfile.open(glean_sdist()) as tar:
        tar.extractall(where, filter="data")
    repo = where / "glean"
    (where / f"glean-{GLEAN_VERSION}").rename(repo)
    # pbr takes a version from PKG-INFO before git: drop what the sdist generated
    for generated in ("PKG-INFO", "glean.egg-info", "AUTHORS", "ChangeLog"):
        subprocess.run(["rm", "-rf", str(repo / generated)], check=True)
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"glean {GLEAN_VERSION}")
    git(repo, "tag", "-a", "-m", GLEAN_VERSION, GLEAN_VERSION)
    (repo / "glean" / "dibpy-test-marker").write_text("from the local checkout\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a change after the release")
    return repo, git(repo, "rev-parse", "HEAD")


def make_test_elements(root: Path) -> Path:
    els = root / "elements"
    write_test_debian(els)
    write_snap_element(els)
    # systemd in the tree, and the interface files of a cloud image
    write(els / "cloudy/README.rst", "systemd and a cloud image's interface files.\n")
    write(els / "cloudy/element-deps", "package-installs\n")
    write(els / "cloudy/package-installs.yaml", "systemd:\nsystemd-sysv:\n")
    write(
        els / "cloudy/install.d/10-cloudy-interfaces",
        "#!/bin/bash\nset -eu -o pipefail\nmkdir -p /etc/network/interfaces.d\n"
        "printf 'auto eth0\\niface eth0 inet dhcp\\n' > /etc/network/interfaces.d/eth0\n"
        "printf 'auto ens3\\niface ens3 inet dhcp\\n' > /etc/network/interfaces.d/ens3\n"
        "printf 'keep me\\n' > /etc/network/interfaces.d/other\n"
        "printf 'auto lo eth0\\niface lo inet loopback\\niface eth0 inet dhcp\\n'"
        " > /etc/network/interfaces\n",
        0o755,
    )
    return els


def build(root: Path, cache: Path, **env: str) -> tuple[Path, str]:
    return snapshot_tree(root, cache, make_test_elements(root), ["cloudy", "simple-init"], **env)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    shared = os.environ.get("DIBPY_TEST_IMAGE_CACHE")
    return Path(shared) if shared else tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def repo_tree(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> tuple[Path, str, str]:
    """(tree, build log, the commit installed) of the repo install type."""
    repo, commit = local_glean_repo(tmp_path_factory.mktemp("glean-src"))
    tree, log = build(
        tmp_path_factory.mktemp("repo"),
        cache,
        DIB_INSTALLTYPE_simple_init="repo",
        DIB_REPOLOCATION_glean=str(repo),
        DIB_SIMPLE_INIT_NO_DHCP_FALLBACK="1",
    )
    return tree, log, commit


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> tuple[Path, str]:
    glean_sdist()  # skips when the index is unreachable, as pip in the chroot would fail
    # pinned, so that the release is known (DIB_SIMPLE_INIT_GLEAN is what pip installs)
    return build(
        tmp_path_factory.mktemp("source"), cache, DIB_SIMPLE_INIT_GLEAN=f"glean=={GLEAN_VERSION}"
    )


def dist_info(tree: Path) -> Path:
    """glean's installed metadata: a .dist-info, or an .egg-info where the image's pip
    installs a source tree the legacy way (Debian 12's pip 23 with setuptools 66)."""
    found = list((tree / "usr/glean/lib").glob("python3*/site-packages/glean-*.*-info"))
    assert len(found) == 1, found
    return found[0]


def test_repo_install_is_the_local_checkout(repo_tree: tuple[Path, str, str]) -> None:
    tree, log, commit = repo_tree
    # the checkout source-repositories made, at the commit after the tag
    manifest = (tree / "etc/dib-manifests/dib-source-repositories").read_text()
    assert " git /tmp/glean.git " in manifest and manifest.split()[-1] == commit
    info = dist_info(tree)
    # pbr's version of a commit after the 1.25.1 tag, and that commit
    assert info.name.startswith("glean-1.25.2.dev1."), info
    assert json.loads((info / "pbr.json").read_text())["git_version"] == commit[:7]
    site = info.parent
    assert (site / "glean/dibpy-test-marker").exists()
    assert "glean 1.25.2.dev1 from /tmp/glean.git in /usr/glean" in log
    for cmd in ("glean", "glean-install"):
        link = tree / "usr/local/bin" / cmd
        assert os.readlink(link) == f"/usr/glean/bin/{cmd}"
    r = subprocess.run(["chroot", str(tree), "glean", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--no-dhcp-fallback" in r.stdout, r.stderr


def test_glean_install_wrote_systemd_units_and_udev_rule(repo_tree: tuple[Path, str, str]) -> None:
    tree = repo_tree[0]
    units = tree / "usr/lib/systemd/system"
    assert (units / "glean-early.service").is_file()
    service = (units / "glean@.service").read_text()
    assert "/usr/glean/lib/" in service  # the venv's scripts dir, filled in by glean-install
    assert "%%" not in service
    rule = (tree / "etc/udev/rules.d/99-glean.rules").read_text()
    assert "glean@" in rule
    wants = tree / "etc/systemd/system/multi-user.target.wants/glean-early.service"
    assert os.readlink(wants).endswith("/lib/systemd/system/glean-early.service")
    # not the sysv script glean-install writes when it finds no systemd
    assert not (tree / "etc/init.d/glean").exists()


def test_no_dhcp_fallback_reaches_glean(
    repo_tree: tuple[Path, str, str], source_tree: tuple[Path, str]
) -> None:
    on = (repo_tree[0] / "usr/lib/systemd/system/glean@.service").read_text()
    off = (source_tree[0] / "usr/lib/systemd/system/glean@.service").read_text()
    start = [ln for ln in on.splitlines() if "python-glean" in ln]
    assert start and all("--no-dhcp-fallback" in ln for ln in start), on
    assert "--no-dhcp-fallback" not in off


def test_8021q_is_loaded_at_boot(repo_tree: tuple[Path, str, str]) -> None:
    tree = repo_tree[0]
    conf = tree / "etc/modules-load.d/simple-init-8021q.conf"
    assert conf.read_text().split() == ["8021q"]
    # /etc/modules gets a line only where the image has one (Debian 12's kmod no longer
    # ships it): the file is not made up
    modules = tree / "etc/modules"
    assert not modules.exists() or modules.read_text().split().count("8021q") == 1


def test_cloud_image_interface_files_are_removed(repo_tree: tuple[Path, str, str]) -> None:
    tree = repo_tree[0]
    d = tree / "etc/network/interfaces.d"
    assert not (d / "eth0").exists() and not (d / "ens3").exists()
    assert (d / "other").exists()
    text = (tree / "etc/network/interfaces").read_text()
    assert "eth0" not in text and "iface lo inet loopback" in text
    assert "source /etc/network/interfaces.d/*" in text
    assert (tree / "sbin/ifup").exists() or (tree / "usr/sbin/ifup").exists()


def test_source_install_is_the_index_release(source_tree: tuple[Path, str]) -> None:
    tree, log = source_tree
    assert dist_info(tree).name.startswith(f"glean-{GLEAN_VERSION}.")
    assert not (dist_info(tree) / "../glean/dibpy-test-marker").exists()
    # glean's repository was not fetched: only the repo install type uses it
    assert not (tree / "tmp/glean.git").exists()
    assert "glean: install type package, not source; not fetched" in log
    assert (tree / "etc/udev/rules.d/99-glean.rules").is_file()
