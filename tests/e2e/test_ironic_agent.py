"""The Ironic deploy ramdisk: ``disk-image-create ironic-agent debian-minimal``.

It writes NAME.kernel and NAME.initramfs (and no disk image) with ironic-python-agent
installed from the Python package index; booted in QEMU, systemd starts the agent.
There is no Ironic API to talk to, so the agent's start is what is checked: its unit
started and the agent itself logged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dibpy.boottest import BootTest
from tests.e2e.boot_helpers import LOGIN, Outputs, build

# wait (up to 4 min) until the agent says it starts, then show its journal
WAIT_FOR_AGENT = (
    "for i in $(seq 80); do sudo journalctl -b -u ironic-python-agent --no-pager "
    "| grep -q 'Starting ironic-python-agent version' && break; sleep 3; done; "
    "sudo systemctl is-enabled ironic-python-agent; "
    "sudo journalctl -b -u ironic-python-agent --no-pager | head -n 40"
)


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Outputs:
    out = tmp_path_factory.mktemp("ironic") / "ironic-deploy"
    return build(
        "disk-image-create", out, ["ironic-agent", "debian-minimal", "devuser"], image_cache
    )


def test_deploy_kernel_and_ramdisk_only(deploy: Outputs) -> None:
    assert deploy.file(".kernel").read_bytes()[0x202:0x206] == b"HdrS"
    assert deploy.file(".initramfs").stat().st_size > 50 * 1024 * 1024
    assert not deploy.file(".qcow2").exists()
    assert "ramdisk-base: wrote" in deploy.log


def test_agent_starts_at_boot(deploy: Outputs) -> None:
    res = BootTest(
        kernel=deploy.file(".kernel"),
        initrd=deploy.file(".initramfs"),
        append="console=ttyS0 ipa-insecure=1",
        memory_mb=3072,
        login=LOGIN,
        command=WAIT_FOR_AGENT,
        timeout=600,
        command_timeout=420,
        console_log=deploy.file(".console.log"),
    ).run()
    out = res.command_output
    assert out is not None
    assert "enabled" in out, out
    assert "Started ironic-python-agent.service" in out, out
    # the agent's own log line (oslo.log, module ironic_python_agent.agent)
    assert "Starting ironic-python-agent version" in out, out
