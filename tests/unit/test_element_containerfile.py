"""containerfile's root.d hook with a stand-in container runtime on PATH (this host has no
container daemon and no registry): the container file it picks, the runtime calls it
makes, the exported tree it unpacks, the clean-up it always does; and rocky-container's
mirror hook on repository files."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, write

ELEMENTS = REPO / "elements"
HOOK = ELEMENTS / "containerfile/root.d/08-containerfile"

RUNTIME = r"""#!/bin/bash
set -eu
echo "$*" >> "$RUNTIME_LOG"
case "$1" in
    build) [ -z "${FAIL_BUILD:-}" ] || { echo "build failed" >&2; exit 1; } ;;
    export) tar -C "$EXPORT_TREE" -cf - . ;;
esac
"""


@pytest.fixture
def host(tmp_path: Path) -> Path:
    for name in ("podman", "docker"):
        write(tmp_path / "bin" / name, RUNTIME, 0o755)
    write(tmp_path / "export/etc/os-release", 'ID="rocky"\nVERSION_ID="9.4"\n')
    write(tmp_path / "export/usr/bin/dnf", "#!/bin/sh\n", 0o755)
    (tmp_path / "root").mkdir()
    return tmp_path


def run_hook(host: Path, path: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": path or f"{host / 'bin'}:/usr/bin:/bin",
        "TARGET_ROOT": str(host / "root"),
        "RUNTIME_LOG": str(host / "runtime.log"),
        "EXPORT_TREE": str(host / "export"),
        "DIB_IMAGE_CACHE": str(host / "cache"),
        "IMAGE_ELEMENT_YAML": "\n".join(
            f"{e}: {ELEMENTS / e}" for e in ("base", "containerfile", "rocky-container")
        ),
        **env,
    }
    return subprocess.run(
        ["bash", str(HOOK)], env=full, capture_output=True, text=True, check=False
    )


def log(host: Path) -> list[list[str]]:
    return [ln.split() for ln in (host / "runtime.log").read_text().splitlines()]


def test_builds_runs_exports_and_cleans_up(host: Path) -> None:
    r = run_hook(host, DIB_RELEASE="9", DIB_CONTAINERFILE_BUILDOPTS="--pull=never --squash")
    assert r.returncode == 0, r.stderr
    calls = log(host)
    assert [c[0] for c in calls] == ["build", "run", "export", "rm", "rmi"]
    build = calls[0]
    assert build[1:3] == ["--network", "host"]
    assert build[build.index("-f") + 1] == str(ELEMENTS / "rocky-container/containerfiles/9")
    assert build[-3:] == ["--pull=never", "--squash", str(host / "cache/containerfile")]
    tag = build[build.index("-t") + 1]
    assert calls[1][-2:] == [tag, "/bin/sh"] and calls[4] == ["rmi", tag]
    name = calls[1][calls[1].index("--name") + 1]
    assert calls[2] == ["export", name] and calls[3] == ["rm", "-f", name]
    assert (host / "root/etc/os-release").read_text().startswith('ID="rocky"')
    assert os.access(host / "root/usr/bin/dnf", os.X_OK)


def test_explicit_file_docker_and_network(host: Path) -> None:
    cf = host / "Containerfile"
    cf.write_text("FROM scratch\n")
    write(host / "root/.extra_settings", "DIB_CONTAINERFILE_NETWORK_DRIVER=bridge\n")
    r = run_hook(host, DIB_CONTAINERFILE_DOCKERFILE=str(cf), DIB_CONTAINERFILE_RUNTIME="docker")
    assert r.returncode == 0, r.stderr
    build = log(host)[0]
    assert build[1:3] == ["--network", "bridge"] and str(cf) in build
    assert not (host / "root/.extra_settings").exists()


def test_a_failed_build_still_cleans_up(host: Path) -> None:
    r = run_hook(host, DIB_RELEASE="9", FAIL_BUILD="1")
    assert r.returncode != 0
    assert [c[0] for c in log(host)] == ["build", "rm", "rmi"]
    assert list((host / "root").iterdir()) == []


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"DIB_RELEASE": "7"}, ["no container file", "containerfiles/7"]),
        ({"DIB_CONTAINERFILE_DOCKERFILE": "/nonexistent"}, ["/nonexistent is not a file"]),
        ({"DIB_CONTAINERFILE_RUNTIME": "lxc"}, ["DIB_CONTAINERFILE_RUNTIME=lxc"]),
    ],
)
def test_bad_input_is_one_line(host: Path, env: dict[str, str], words: list[str]) -> None:
    r = run_hook(host, **env)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert all(w in r.stderr for w in words), r.stderr


def test_missing_runtime_is_one_line(host: Path) -> None:
    r = run_hook(host, path="/usr/bin:/bin", DIB_RELEASE="9")
    assert r.returncode == 1 and r.stderr.strip().startswith(
        "containerfile: podman is not installed"
    )


@pytest.mark.parametrize("element", ["rocky-container", "almalinux-container", "fedora-container"])
def test_distribution_container_files(element: str) -> None:
    files = sorted((ELEMENTS / element / "containerfiles").iterdir())
    env = (ELEMENTS / element / "environment.d" / f"10-{element}.bash").read_text()
    default = re.search(r"DIB_RELEASE:-(\d+)", env)
    assert default and default.group(1) in {f.name for f in files}
    for f in files:
        image = re.search(r"^FROM (\S+)$", f.read_text(), re.M)
        assert image, f
        # no registry host in the image name: the runtime's own registry configuration,
        # or DIB_CONTAINERFILE_BUILDOPTS=--from, says where it comes from
        assert "." not in image.group(1).split("/")[0], image.group(1)
        assert image.group(1).endswith(f":{f.name}")


def test_container_elements_resolve_as_the_operating_system() -> None:
    from dibpy.elements import find_library, resolve

    for element in ("rocky-container", "almalinux-container", "fedora-container"):
        res = resolve(["base", element, "vm", "block-device-efi"], find_library({}))
        assert res.provided_by["operating-system"] == "containerfile"
        assert {"yum", "rpm-distro", "selinux-fixfiles-restore"} <= set(res.names)


MIRROR_HOOK = ELEMENTS / "rocky-container/pre-install.d/00-set-rocky-mirror"


def test_rocky_mirror_rewrites_the_repository_files(tmp_path: Path) -> None:
    repo = (
        "[baseos]\nname=Rocky Linux $releasever - BaseOS\n"
        "mirrorlist=https://mirrors.example/mirrorlist?arch=$basearch&repo=BaseOS-$releasever\n"
        "#baseurl=http://dl.example/$contentdir/$releasever/BaseOS/$basearch/os/\n"
        "gpgcheck=1\n"
    )
    write(tmp_path / "etc/yum.repos.d/rocky.repo", repo)
    script = MIRROR_HOOK.read_text().replace("/etc/yum.repos.d", f"{tmp_path}/etc/yum.repos.d")
    env = {"PATH": "/usr/bin:/bin", "DIB_DISTRIBUTION_MIRROR": "http://m.local/rocky/"}
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, env=env)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "etc/yum.repos.d/rocky.repo").read_text()
    assert "baseurl=http://m.local/rocky/$releasever/BaseOS/$basearch/os/\n" in text
    assert "mirrorlist" not in text and "gpgcheck=1" in text


DOCKER = ELEMENTS / "docker/root.d/08-docker"


def test_docker_exports_a_container_of_the_image(host: Path) -> None:
    write(host / "bin/docker", RUNTIME + 'if [ "$1" = run ]; then echo c0ffee; fi\n', 0o755)
    env = {"PATH": f"{host / 'bin'}:/usr/bin:/bin", "TARGET_ROOT": str(host / "root"),
           "RUNTIME_LOG": str(host / "runtime.log"), "EXPORT_TREE": str(host / "export"),
           "DISTRO_NAME": "debian", "DIB_RELEASE": "bookworm"}  # fmt: skip
    r = subprocess.run(["bash", str(DOCKER)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert log(host) == [["run", "-d", "debian:bookworm", "/bin/sh"], ["export", "c0ffee"],
                         ["rm", "-f", "c0ffee"]]  # fmt: skip
    assert (host / "root/etc/os-release").is_file()
    env["DIB_DOCKER_IMAGE"] = "my/own:1"
    r = subprocess.run(["bash", str(DOCKER)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and log(host)[3][2] == "my/own:1"
    del env["DIB_RELEASE"]
    r = subprocess.run(["bash", str(DOCKER)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 1 and r.stderr.strip() == "docker: DIB_RELEASE is not set"
