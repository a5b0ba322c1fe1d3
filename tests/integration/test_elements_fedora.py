"""fedora's root.d hook: the newest compose of the release is found in the listing of
DIB_CLOUD_IMAGES (a local HTTP server over a directory of images made here), fetched,
checked against its CHECKSUM file and extracted with real qemu-img, losetup and mount;
DIB_LOCAL_IMAGE is used as it is; the mirror hook rewrites the repository files."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dibpy.hookenv import LIB_DIR
from tests.conftest import REPO, mounts_under, require_loop, serve_directory, url_of, write
from tests.integration.test_elements_centos import make_cloud_image

ELEMENTS = REPO / "elements"
HOOK = ELEMENTS / "fedora/root.d/10-fedora-cloud-image"
MIRROR = ELEMENTS / "fedora/pre-install.d/00-02-set-fedora-mirror"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server listing tmp_path/site (the cloud images directory)."""
    root = tmp_path / "site"
    root.mkdir()
    with serve_directory(root) as server:
        yield f"{url_of(server)}/", root


def run_hook(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    hooks = tmp_path / "hooks"
    (hooks / "bin").mkdir(parents=True, exist_ok=True)
    for link, target in (("bin/cache-url", ELEMENTS / "cache-url/bin/cache-url"),):
        if not (hooks / link).exists():
            (hooks / link).symlink_to(target)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    full = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TARGET_ROOT": str(root),
            "TMP_HOOKS_PATH": str(hooks), "TMP_BUILD_DIR": str(tmp_path), "ARCH": "amd64",
            "DIB_RELEASE": "41", "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
            "_LIB": str(LIB_DIR), **env}  # fmt: skip
    r = subprocess.run(["bash", str(HOOK)], env=full, capture_output=True, text=True, check=False)
    return r, root


def test_newest_compose_from_the_listing_is_fetched_checked_and_extracted(
    tmp_path: Path, site: tuple[str, Path]
) -> None:
    require_loop()
    url, files = site
    image = make_cloud_image(tmp_path / "img")
    new = "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2"
    shutil.copy(image, files / new)
    (files / "Fedora-Cloud-Base-Generic-41-1.2.x86_64.qcow2").write_text("older compose\n")
    (files / "Fedora-Cloud-Base-Generic-40-1.14.x86_64.qcow2").write_text("other release\n")
    digest = hashlib.sha256((files / new).read_bytes()).hexdigest()
    (files / "Fedora-Cloud-41-1.4-x86_64-CHECKSUM").write_text(f"SHA256 ({new}) = {digest}\n")
    r, root = run_hook(tmp_path, DIB_CLOUD_IMAGES=url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{new} verified" in r.stdout + r.stderr
    assert (root / "etc/cloud-image-marker").read_text() == "from the cloud image root\n"
    assert not mounts_under(tmp_path)


def test_a_wrong_checksum_stops_the_build(tmp_path: Path, site: tuple[str, Path]) -> None:
    url, files = site
    new = "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2"
    (files / new).write_text("not the image the checksum is for\n")
    (files / "Fedora-Cloud-41-1.4-x86_64-CHECKSUM").write_text(f"SHA256 ({new}) = {'0' * 64}\n")
    r, root = run_hook(tmp_path, DIB_CLOUD_IMAGES=url)
    assert r.returncode != 0 and "checksum" in r.stderr
    assert list(root.iterdir()) == []


def test_no_image_for_the_release_is_one_line(tmp_path: Path, site: tuple[str, Path]) -> None:
    url, files = site
    (files / "Fedora-Cloud-Base-Generic-40-1.14.x86_64.qcow2").write_text("other release\n")
    r, _ = run_hook(tmp_path, DIB_CLOUD_IMAGES=url)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("fedora: no Fedora-Cloud-Base 41 qcow2")


def test_without_a_source_is_one_line(tmp_path: Path) -> None:
    r, _ = run_hook(tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "DIB_CLOUD_IMAGES" in r.stderr and "DIB_LOCAL_IMAGE" in r.stderr


def test_local_image(tmp_path: Path) -> None:
    require_loop()
    image = make_cloud_image(tmp_path / "img")
    r, root = run_hook(tmp_path, DIB_LOCAL_IMAGE=str(image))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "boot/vmlinuz-3.10.0-fake.x86_64").is_file()


def test_mirror_replaces_the_metalinks(tmp_path: Path) -> None:
    repos = tmp_path / "etc/yum.repos.d"
    tail = "$releasever/Everything/$basearch/os/"
    write(repos / "fedora.repo", "[fedora]\nmetalink=https://mirrors.example/m?repo=fedora\n"
          f"#baseurl=http://download.example/pub/fedora/linux/releases/{tail}\n")  # fmt: skip
    write(repos / "fedora-updates.repo", "[updates]\nmetalink=https://mirrors.example/x\n"
          f"#baseurl=http://download.example/pub/fedora/linux/updates/{tail}\n")  # fmt: skip
    script = MIRROR.read_text().replace("/etc/yum.repos.d", str(repos))
    env = {"PATH": "/usr/bin:/bin", "DIB_DISTRIBUTION_MIRROR": "http://m.local/fedora/linux/"}
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert (repos / "fedora.repo").read_text().splitlines()[1:] == [
        "baseurl=http://m.local/fedora/linux/releases/$releasever/Everything/$basearch/os/"
    ]
    assert (repos / "fedora-updates.repo").read_text().splitlines()[1:] == [
        "baseurl=http://m.local/fedora/linux/updates/$releasever/Everything/$basearch/"
    ]
