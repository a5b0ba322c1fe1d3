"""e2e: real debootstrap builds of debian-minimal, booted in QEMU.

The network probe: the host's Debian mirror (from its apt sources) must answer; without it
every test here skips with that reason.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, loop_devices_work

DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]
DEV_USER = "e2euser"
DEV_PASSWORD = "e2e-Secret-pw-4711"
#: every output format a hypervisor boots: all written by the one e2e build, all booted
BOOTABLE_TYPES = "qcow2,raw,vhd,vhdx,vmdk"


@functools.cache
def debian_mirror_reachable() -> str | None:
    if not Path("/usr/sbin/debootstrap").exists():
        return "debootstrap is not installed"
    try:
        # the same sources debootstrap will use when no DIB_DISTRIBUTION_MIRROR is set
        r = subprocess.run(
            ["apt-get", "update", "-qq", "--error-on=any"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot ask apt for its sources: {e}"
    if r.returncode != 0:
        return f"the host's Debian mirror is unreachable: {r.stderr.strip()[-200:]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.e2e)
        reason = loop_devices_work() or debian_mirror_reachable()
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Built:
    image: Path
    log: str
    seconds: float
    cache: Path


def build_env(cache: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_") and k != "ELEMENTS_PATH"}
    env.update(DIB_IMAGE_CACHE=str(cache), TMP_DIR=str(tmp))
    env.update(extra)
    return env


def run_build(out: Path, elements: list[str], cache: Path, *args: str, **env: str) -> Built:
    import time

    tmp = out.parent / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    r = subprocess.run(
        [*DIC, "-o", str(out), *args, *elements],
        env=build_env(cache, tmp, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1500,
    )
    seconds = time.monotonic() - start
    assert r.returncode == 0, r.stdout[-6000:]
    return Built(out.with_name(out.name + ".qcow2"), r.stdout, seconds, cache)


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = os.environ.get("DIBPY_TEST_IMAGE_CACHE")
    if shared:
        Path(shared).mkdir(parents=True, exist_ok=True)
        return Path(shared)
    return tmp_path_factory.mktemp("image-cache")


#: the Debian VM most e2e tests share: sshd (openssh-server, with runtime-ssh-host-keys)
#: as in diskimage-builder's boot tests, a dev user, DHCP on every NIC
DEVUSER_ELEMENTS = ["debian-minimal", "vm", "openssh-server", "devuser", "dhcp-all-interfaces"]


@pytest.fixture(scope="session")
def devuser_image(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Iterator[Built]:
    out = tmp_path_factory.mktemp("e2e") / "debian"
    yield run_build(
        out,
        DEVUSER_ELEMENTS,
        image_cache,
        "-t",
        BOOTABLE_TYPES,
        DIB_DEV_USER_USERNAME=DEV_USER,
        DIB_DEV_USER_PASSWORD=DEV_PASSWORD,
        DIB_DEV_USER_PWDLESS_SUDO="yes",
    )
