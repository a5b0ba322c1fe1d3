"""pip-and-virtualenv's install types in a real Debian tree (root, chroot, Debian archive,
the package index through the build's CA bundle).

Three trees are built with the real pipeline from the same cached bootstrap:

* ``source``: the default install type, pip bootstrapped inside the chroot (Debian 12
  turns ``ensurepip`` off for the system Python, so from ensurepip's wheel), then pip
  and virtualenv from the index;
* ``get-pip``: the same with ``DIB_REPOLOCATION_pip_and_virtualenv`` pointing at a small
  fake ``get-pip.py`` served on 127.0.0.1, which records that it ran;
* ``package``: ``DIB_INSTALLTYPE_pip_and_virtualenv=package``, Debian's own packages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dibpy.chroot import CA_BUNDLE_IN_TARGET
from tests.conftest import (
    chroot_works,
    serve_directory,
    snapshot_tree,
    url_of,
    write_snap_element,
    write_test_debian,
)
from tests.integration.test_elements_debian_tree import archive_reachable

DEBIAN_PIP = "23.0.1"  # python3-pip in bookworm

# A stand-in for get-pip.py: it records its arguments, then installs pip with the pip
# of ensurepip's wheel, as the element's own bootstrap does on Debian.
FAKE_GET_PIP = """\
import glob, os, subprocess, sys, ensurepip
with open("/root/fake-get-pip-ran", "w") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
here = os.path.dirname(ensurepip.__file__)
wheels = glob.glob(here + "/_bundled/pip-*.whl") + glob.glob("/usr/share/python-wheels/pip-*.whl")
wheel = wheels[0]
sys.exit(subprocess.call([sys.executable, wheel + "/pip", "install", *sys.argv[1:], "pip"]))
"""


def index_pip_version() -> str:
    """The newest pip on the index the chroot's pip will use (pip's default, through the
    build's CA bundle: no host pip.conf, no local wheels); skips when it cannot be asked."""
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env["PIP_CONFIG_FILE"] = os.devnull
    r = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "pip", "--no-cache-dir"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    m = re.search(r"^pip \(([^)]+)\)", r.stdout, re.M)
    if r.returncode != 0 or not m:
        tail = (r.stderr.strip().splitlines() or ["no answer"])[-1]
        pytest.skip(f"the package index is unreachable: {tail}")
    return m.group(1)


def build(root: Path, cache: Path, **env: str) -> tuple[Path, str]:
    els = root / "elements"
    write_test_debian(els)
    write_snap_element(els)
    return snapshot_tree(root, cache, els, ["pip-and-virtualenv"], **env)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    shared = os.environ.get("DIBPY_TEST_IMAGE_CACHE")
    return Path(shared) if shared else tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def index_version() -> str:
    return index_pip_version()


@pytest.fixture(scope="module")
def source_tree(
    tmp_path_factory: pytest.TempPathFactory, cache: Path, index_version: str
) -> tuple[Path, str]:
    return build(tmp_path_factory.mktemp("source"), cache)


@pytest.fixture(scope="module")
def getpip_tree(
    tmp_path_factory: pytest.TempPathFactory, cache: Path, index_version: str
) -> Iterator[tuple[Path, str]]:
    served = tmp_path_factory.mktemp("served")
    (served / "get-pip.py").write_text(FAKE_GET_PIP)
    with serve_directory(served) as server:
        yield build(
            tmp_path_factory.mktemp("getpip"),
            cache,
            DIB_REPOLOCATION_pip_and_virtualenv=f"{url_of(server)}/get-pip.py",
        )


@pytest.fixture(scope="module")
def package_tree(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> tuple[Path, str]:
    return build(
        tmp_path_factory.mktemp("package"), cache, DIB_INSTALLTYPE_pip_and_virtualenv="package"
    )


def in_chroot(tree: Path, *cmd: str) -> str:
    r = subprocess.run(["chroot", str(tree), *cmd], capture_output=True, text=True)
    assert r.returncode == 0, (cmd, r.stderr)
    return r.stdout


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def check_index_pip(tree: Path, index_version: str) -> None:
    out = in_chroot(tree, "pip", "--version")
    version = out.split()[1]
    assert version == index_version, out
    assert version_key(version) > version_key(DEBIAN_PIP)
    where = in_chroot(tree, "sh", "-c", "command -v pip").strip()
    assert where == "/usr/local/bin/pip"
    # not a file of a Debian package
    r = subprocess.run(["chroot", str(tree), "dpkg", "-S", where], capture_output=True)
    assert r.returncode != 0
    assert "/usr/local/lib/" in out
    # virtualenv works, and makes an environment with a pip of its own
    in_chroot(tree, "virtualenv", "/tmp/x")
    assert (tree / "tmp/x/bin/pip").exists()
    in_chroot(tree, "/tmp/x/bin/python", "-c", "import sys; assert sys.prefix == '/tmp/x'")


def check_no_build_ca(tree: Path) -> None:
    ca = Path(CA_BUNDLE_IN_TARGET)
    assert not (tree / ca.parent.relative_to("/")).exists()
    r = subprocess.run(
        ["grep", "-rlF", str(ca.parent), "etc", "root", "usr/local", "usr/lib/python3"],
        cwd=tree, capture_output=True, text=True,
    )  # fmt: skip
    assert r.stdout == "", r.stdout


def test_source_pip_is_the_index_release(source_tree: tuple[Path, str], index_version: str) -> None:
    tree, log = source_tree
    check_index_pip(tree, index_version)
    assert "running pip from its wheel" in log
    # the distribution's pip and virtualenv were not installed
    assert not (tree / "usr/bin/pip3").exists()
    assert not (tree / "usr/lib/python3/dist-packages/virtualenv").exists()
    # the marker stays: the image's users keep Debian's protection
    assert list((tree / "usr/lib").glob("python3.*/EXTERNALLY-MANAGED"))
    assert not (tree / "root/.cache/pip").exists()
    check_no_build_ca(tree)


def test_get_pip_location_is_used(getpip_tree: tuple[Path, str], index_version: str) -> None:
    tree, log = getpip_tree
    ran = (tree / "root/fake-get-pip-ran").read_text()
    assert "--upgrade" in ran.split()
    assert "bootstrapping pip with /tmp/get-pip.py" in log
    assert not (tree / "tmp/get-pip.py").exists()
    manifest = (tree / "etc/dib-manifests/dib-source-repositories").read_text()
    assert "pip-and-virtualenv file /tmp/get-pip.py http://127.0.0.1:" in manifest
    check_index_pip(tree, index_version)
    check_no_build_ca(tree)


def test_package_is_debians(package_tree: tuple[Path, str]) -> None:
    tree, log = package_tree
    out = in_chroot(tree, "pip3", "--version")
    assert out.split()[1] == DEBIAN_PIP, out
    assert not (tree / "usr/local/bin/pip").exists()
    owner = in_chroot(tree, "dpkg", "-S", "/usr/bin/pip3")
    assert owner.startswith("python3-pip:")
    assert in_chroot(tree, "dpkg", "-S", "/usr/bin/virtualenv").startswith("python3-virtualenv:")
    in_chroot(tree, "virtualenv", "/tmp/x")
    assert "04-install-pip" not in log
