"""The .vmx guest OS mapping and the -t vmware settings (no root needed)."""

from __future__ import annotations

import pytest

from dibpy import outputs
from dibpy.errors import ConfigError, MultiError
from dibpy.outputs import OutputOptions
from dibpy.outputs import options as qopts
from dibpy.outputs.vmware import Hardware, guest_os, parse_vmx, vmx_text


@pytest.mark.parametrize(
    ("os_release", "arch", "want"),
    [
        ({"ID": "debian", "VERSION_ID": "12"}, "amd64", "debian12-64"),
        ({"ID": "debian", "VERSION_ID": "13"}, "amd64", "debian12-64"),  # newest known
        ({"ID": "debian", "VERSION_ID": "11"}, "arm64", "arm-debian11-64"),
        ({"ID": "ubuntu", "VERSION_ID": "24.04"}, "amd64", "ubuntu-64"),
        ({"ID": "centos", "VERSION_ID": "7"}, "x86_64", "centos7-64"),
        ({"ID": "rhel", "VERSION_ID": "9.3"}, "x86_64", "rhel9-64"),
        ({"ID": "gentoo"}, "amd64", "otherlinux-64"),
        ({"ID": "ubuntu"}, "i386", "ubuntu"),
        (None, "amd64", "other-64"),
    ],
)
def test_guest_os(os_release: dict[str, str] | None, arch: str, want: str) -> None:
    assert guest_os(os_release, arch) == want


def test_vmx_round_trips_through_its_parser() -> None:
    hw = Hardware(controller="pvscsi", firmware="efi")
    vmx = parse_vmx(vmx_text("n", "n.vmdk", hw))
    assert vmx["scsi0:0.fileName"] == "n.vmdk" and vmx["scsi0.virtualDev"] == "pvscsi"
    assert vmx["firmware"] == "efi"


def test_bad_settings_are_named_together() -> None:
    env = {"DIB_VMWARE_CPUS": "two", "DIB_VMWARE_NIC": "rtl8139", "DIB_VMWARE_SUBFORMAT": "x"}
    with pytest.raises(MultiError) as e:
        outputs.validate([outputs.get("vmware")], OutputOptions(environ=env))
    text = str(e.value)
    assert "DIB_VMWARE_CPUS=two" in text and "DIB_VMWARE_NIC=rtl8139" in text
    assert "subformat=x" in text


def test_vmdk_and_vmware_together_are_refused() -> None:
    with pytest.raises(MultiError, match="both write NAME.vmdk"):
        outputs.validate([outputs.get("vmdk"), outputs.get("vmware")], OutputOptions())


def test_split_subformats_are_vmdk_options_not_ova_ones() -> None:
    for sub in qopts.SPLIT_VMDK:
        assert qopts.resolve("vmdk", f"subformat={sub}", {})["subformat"] == sub
        assert qopts.resolve("vmware", "", {"DIB_VMWARE_SUBFORMAT": sub})["subformat"] == sub
    with pytest.raises(ConfigError):
        qopts.resolve("vmware", "subformat=streamOptimized", {})
