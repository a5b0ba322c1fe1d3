"""diskimage-builder's client ironic-python-agent-builder, unmodified, on dibpy.

The client comes from the package index in its own venv (tests/ipabref.py), with dibpy's
``disk-image-create`` first on PATH, and builds Ironic's deploy ramdisk with its own
elements, its ``-tls`` and ``-podman`` elements and diskimage-builder's ``devuser`` and
``dynamic-login``.  Its source repositories (the agent, OpenStack's requirements) are
local git repositories made from the agent's sdist.  Booted in QEMU, root logs in with
the password hash given on the kernel command line (dynamic-login), and the agent
starts with the TLS and container settings those elements wrote.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.boottest import BootTest
from tests.conftest import loops_under, mounts_under
from tests.e2e.boot_helpers import DEVUSER_ENV
from tests.e2e.conftest import DEV_USER, build_env
from tests.ipabref import IPA_VERSION, PINNED, ipa_builder, source_repos

ROOT_PASSWORD = "ipa-Root-pw-0815"
EXTRA = ["ironic-python-agent-tls", "ironic-python-agent-podman", "devuser", "dynamic-login"]
# wait (up to 4 min) for the agent's start line, then show what a person would look at
LOOK = (
    "for i in $(seq 80); do journalctl -b -u ironic-python-agent --no-pager "
    "| grep -q 'Starting ironic-python-agent version' && break; sleep 3; done; "
    "systemctl is-enabled ironic-python-agent; id " + DEV_USER + "; podman --version; "
    "openssl x509 -noout -subject -in /etc/ironic-python-agent.d/agent.crt; "
    "journalctl -b -u ironic-python-agent --no-pager | head -n 60"
)


class Ramdisk:
    def __init__(self, base: Path, log: str) -> None:
        self.base, self.log = base, log
        listing = subprocess.run(
            f"zcat {base}.initramfs | cpio -t --quiet",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.files = set(listing.splitlines())

    def file(self, suffix: str) -> Path:
        return self.base.with_name(self.base.name + suffix)


@pytest.fixture(scope="module")
def ramdisk(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Ramdisk:
    builder = ipa_builder()
    work = tmp_path_factory.mktemp("ipa-builder")
    repos = source_repos(work / "repos")
    (work / "tmp").mkdir()
    env = build_env(image_cache, work / "tmp", **DEVUSER_ENV, **repos)
    # dibpy first; the client's venv (holding diskimage-builder's commands) after it
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), str(builder.parent), env.get("PATH", os.defpath)]
    )
    out = work / "out"
    out.mkdir()
    args = [str(builder), "-o", str(out / "ipa")]
    for element in EXTRA:
        args += ["-e", element]
    r = subprocess.run(
        [*args, "debian-minimal"],
        env=env,
        cwd=out,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=2400,
    )
    assert r.returncode == 0, r.stdout[-6000:]
    # nothing of the build is left: no mount, no loop device, no build directory
    assert not mounts_under(work) and not loops_under(work)
    assert not list((work / "tmp").iterdir())
    return Ramdisk(out / "ipa", r.stdout)


def test_dibpy_built_the_ramdisk_and_its_checksums(ramdisk: Ramdisk) -> None:
    # dibpy's stage table, not diskimage-builder's banner
    assert "build stages:" in ramdisk.log
    assert "diskimage-builder version" not in ramdisk.log
    assert ramdisk.file(".kernel").read_bytes()[0x202:0x206] == b"HdrS"
    # the client asks for DIB_CHECKSUM=sha256; its own cleanup.d hook writes the sums
    check = subprocess.run(
        ["sha256sum", "-c", ramdisk.file(".sha256").name],
        cwd=ramdisk.base.parent,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ipa.initramfs: OK" in check.stdout and "ipa.kernel: OK" in check.stdout


def test_the_agent_came_from_the_local_repositories_with_their_constraints(
    ramdisk: Ramdisk,
) -> None:
    site = "opt/ironic-python-agent/lib/python3.11/site-packages/"
    # the whole package (pbr lists a git checkout's files with git, in the image)
    assert site + "ironic_python_agent/cmd/agent.py" in ramdisk.files
    assert site + "ironic_python_agent/extensions/deploy.py" in ramdisk.files
    assert site + f"ironic_python_agent-{IPA_VERSION}.dist-info" in ramdisk.files
    # the pin in the local requirements repository's upper-constraints.txt
    assert site + f"{PINNED[0]}-{PINNED[1]}.dist-info" in ramdisk.files
    # the checkout itself is removed by the client's post-install.d
    assert not any(f.startswith("tmp/ironic-python-agent/") for f in ramdisk.files)


def test_tls_and_podman_settings_are_in_the_ramdisk(ramdisk: Ramdisk) -> None:
    for f in ("agent.crt", "agent.key", "10-configure-tls.conf", "ironic_python_agent.conf"):
        assert f"etc/ironic-python-agent.d/{f}" in ramdisk.files, f
    assert "etc/containers/containers.conf" in ramdisk.files
    assert "usr/bin/podman" in ramdisk.files


def test_root_logs_in_by_dynamic_login_and_the_agent_starts(ramdisk: Ramdisk) -> None:
    crypted = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=ROOT_PASSWORD,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # base64, as diskimage-builder's dynamic-login documents it
    rootpwd = base64.b64encode(crypted.encode()).decode()
    res = BootTest(
        kernel=ramdisk.file(".kernel"),
        initrd=ramdisk.file(".initramfs"),
        append=f'console=ttyS0 ipa-insecure=1 rootpwd="{rootpwd}"',
        memory_mb=3072,
        login=("root", ROOT_PASSWORD),
        command=LOOK,
        timeout=600,
        command_timeout=420,
        console_log=ramdisk.file(".console.log"),
    ).run()
    out = res.command_output
    assert out is not None
    assert "enabled" in out, out
    assert f"({DEV_USER})" in out, out
    assert "podman version" in out, out
    assert "CN = ipa-ramdisk.example.com" in out, out
    assert f"Starting ironic-python-agent version: {IPA_VERSION}" in out, out
    assert "Traceback" not in out, out
