"""``-t vmware``: a VM VMware Workstation opens: ``NAME.vmx`` beside its disk ``NAME.vmdk``.

The disk is a VMDK VMware runs from (monolithicSparse, or a split set with
``vmware:subformat=twoGbMaxExtentSparse`` / ``DIB_VMWARE_SUBFORMAT``).  The ``.vmx``
describes the virtual hardware; what it does not get from a variable it reads from the
image itself (:func:`dibpy.inspect.describe`): the guest OS type from the image's
os-release and the architecture, the firmware from its partition table (an EFI system
partition: ``efi``), the disk controller and network card from whether it is Linux.

Variables (all optional): ``DIB_VMWARE_MEMORY_MB`` (1024), ``DIB_VMWARE_CPUS`` (2),
``DIB_VMWARE_GUEST_OS``, ``DIB_VMWARE_FIRMWARE`` (bios, efi), ``DIB_VMWARE_DISK_CONTROLLER``
(pvscsi, lsilogic, sata, nvme), ``DIB_VMWARE_NIC`` (vmxnet3, e1000e, e1000),
``DIB_VMWARE_HARDWARE_VERSION`` (14).  doc/outputs.md has the mapping tables.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dibpy.errors import ConfigError, DibpyError, MultiError
from dibpy.outputs import options as qopts
from dibpy.outputs.base import OutputOptions, OutputPlugin

LOG = logging.getLogger("dibpy")

CONTROLLERS = ("pvscsi", "lsilogic", "sata", "nvme")
NICS = ("vmxnet3", "e1000e", "e1000")
FIRMWARES = ("bios", "efi")
ARM = ("arm64", "aarch64")
X86_32 = ("i386", "i686", "x86")

#: os-release ID -> VMware guestOS (64-bit x86 names; see :func:`guest_os`)
GUEST_BY_ID = {
    "ubuntu": "ubuntu-64",
    "fedora": "fedora-64",
    "rocky": "rockylinux-64",
    "almalinux": "almalinux-64",
    "opensuse-leap": "opensuse-64",
    "opensuse-tumbleweed": "opensuse-64",
    "sles": "sles15-64",
    "photon": "vmware-photon-64",
}
#: IDs whose guestOS carries the major release: (first, last) known to Workstation 17
VERSIONED = {"debian": (8, 12), "centos": (6, 8), "rhel": (6, 9)}


def guest_os(os_release: Mapping[str, str] | None, arch: str) -> str:
    """VMware's guestOS for an image: ``debian12-64``, ``ubuntu-64``, ...; ``otherlinux-64``
    for another Linux, ``other-64`` when the image has no os-release.  arm64 names get
    VMware's ``arm-`` prefix, 32-bit x86 ones lose ``-64``."""
    name = "other-64"
    if os_release:
        os_id = os_release.get("ID", "").lower()
        major = re.match(r"\d+", os_release.get("VERSION_ID", ""))
        name = GUEST_BY_ID.get(os_id, "otherlinux-64")
        if os_id in VERSIONED:
            low, high = VERSIONED[os_id]
            n = min(max(int(major.group()), low), high) if major else high
            name = f"{os_id}{n}-64"
    if arch in ARM:
        return "arm-" + name
    if arch in X86_32:
        return name.removesuffix("-64")
    return name


@dataclass(frozen=True)
class Hardware:
    guest_os: str = "other-64"
    firmware: str = "bios"
    memory_mb: int = 1024
    cpus: int = 2
    controller: str = "sata"
    nic: str = "e1000e"
    hardware_version: int = 14


def _settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The variables' values, checked; every problem at once, naming its variable."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for var, attr in (
        ("DIB_VMWARE_MEMORY_MB", "memory_mb"),
        ("DIB_VMWARE_CPUS", "cpus"),
        ("DIB_VMWARE_HARDWARE_VERSION", "hardware_version"),
    ):
        v = environ.get(var)
        if v:
            if not v.isdigit() or int(v) < 1:
                problems.append(f"{var}={v}: not a positive integer")
            else:
                values[attr] = int(v)
    for var, attr, choices in (
        ("DIB_VMWARE_FIRMWARE", "firmware", FIRMWARES),
        ("DIB_VMWARE_DISK_CONTROLLER", "controller", CONTROLLERS),
        ("DIB_VMWARE_NIC", "nic", NICS),
    ):
        v = environ.get(var)
        if v:
            if v not in choices:
                problems.append(f"{var}={v}: must be one of {', '.join(choices)}")
            else:
                values[attr] = v
    v = environ.get("DIB_VMWARE_GUEST_OS")
    if v:
        if not re.match(r"^[A-Za-z0-9_.-]+$", v):
            problems.append(f"DIB_VMWARE_GUEST_OS={v}: not a guestOS name (e.g. debian12-64)")
        else:
            values["guest_os"] = v
    if problems:
        raise ConfigError("vmware: " + "; ".join(problems), hint="see doc/outputs.md (vmware)")
    return values


def from_image(raw: Path, arch: str) -> Hardware:
    """What the image needs, read from it: guest OS, firmware, controller, NIC."""
    from dibpy import inspect as dinspect

    try:
        d = dinspect.describe(raw, "raw")
    except DibpyError as e:
        LOG.warning("vmware: could not look inside the image (%s): other-64, bios", e.message)
        return Hardware()
    parts = (d.get("partition_table") or {}).get("partitions") or []
    esp = any(
        p["type"].upper() == dinspect.ESP_GPT or p["type"].lower() in dinspect.ESP_MBR
        for p in parts
    )
    os_release = d.get("os")
    linux = bool(os_release)
    return Hardware(
        guest_os=guest_os(os_release, arch),
        firmware="efi" if esp else "bios",
        # every distribution kernel's initramfs drives VMware's paravirtual SCSI and
        # vmxnet3 (vmw_pvscsi, vmxnet3); another OS gets what needs no extra driver
        controller="pvscsi" if linux and arch not in ARM else "sata",
        nic="vmxnet3" if linux else "e1000e",
    )


def vmx_text(name: str, disk: str, hw: Hardware) -> str:
    """The ``.vmx`` (``key = "value"`` lines, as Workstation writes them)."""
    bus = "sata" if hw.controller == "sata" else "nvme" if hw.controller == "nvme" else "scsi"
    lines: list[tuple[str, str]] = [
        (".encoding", "UTF-8"),
        ("config.version", "8"),
        ("virtualHW.version", str(hw.hardware_version)),
        ("displayName", name),
        ("guestOS", hw.guest_os),
        ("firmware", hw.firmware),
        ("memsize", str(hw.memory_mb)),
        ("numvcpus", str(hw.cpus)),
        ("pciBridge0.present", "TRUE"),
        ("pciBridge4.present", "TRUE"),
        ("pciBridge4.virtualDev", "pcieRootPort"),
        ("pciBridge4.functions", "8"),
        (f"{bus}0.present", "TRUE"),
    ]
    if bus == "scsi":
        lines.append(("scsi0.virtualDev", hw.controller))
    lines += [
        (f"{bus}0:0.present", "TRUE"),
        (f"{bus}0:0.fileName", disk),
        ("ethernet0.present", "TRUE"),
        ("ethernet0.virtualDev", hw.nic),
        ("ethernet0.connectionType", "nat"),
        ("ethernet0.addressType", "generated"),
        ("usb.present", "TRUE"),
    ]
    return "".join(f'{k} = "{v}"\n' for k, v in lines)


def parse_vmx(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r'^\s*([A-Za-z0-9_.:]+)\s*=\s*"([^"]*)"\s*$', line)
        if not m:
            raise DibpyError(f'line {n} is not key = "value": {line[:80]!r}')
        out[m.group(1)] = m.group(2)
    return out


REQUIRED = ("config.version", "virtualHW.version", "guestOS", "firmware", "memsize", "numvcpus")


class Vmware(OutputPlugin):
    name = "vmware"
    extension = "vmx"
    programs = ("qemu-img",)
    file_set = True

    def __init__(self) -> None:
        self.disk_plugin: Any = None
        self.hardware: Hardware | None = None

    def _disk(self) -> Any:
        from dibpy.outputs.qemu import Vmdk

        class Disk(Vmdk):
            name = "vmware"

        return Disk()

    def validate(self, opts: OutputOptions) -> None:
        problems: list[str] = []
        for check in (
            lambda: qopts.resolve("vmware", opts.qemu_img_options, opts.environ),
            lambda: _settings(opts.environ),
        ):
            try:
                check()
            except ConfigError as e:
                problems.append(e.message)
        if problems:
            raise MultiError(problems, hint="see doc/outputs.md (vmware)")

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        self.disk_plugin = self._disk()
        disk = dest.with_suffix(".vmdk")
        self.disk_plugin.write(raw, disk, opts)
        hw = replace(from_image(raw, opts.arch), **_settings(opts.environ))
        self.hardware = hw
        name = opts.image_name or dest.stem
        dest.write_text(vmx_text(name, disk.name, hw))

    def check(self, dest: Path) -> None:
        try:
            vmx = parse_vmx(dest.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise DibpyError(f"vmware output {dest} cannot be read: {e}") from None
        except DibpyError as e:
            raise DibpyError(f"vmware output {dest}: {e.message}") from None
        missing = [k for k in REQUIRED if k not in vmx]
        disks = [v for k, v in vmx.items() if k.endswith(":0.fileName")]
        if missing or not disks:
            raise DibpyError(
                f"vmware output {dest} lacks " + ", ".join(missing or ["a disk (fileName)"])
            )
        disk = dest.with_name(disks[0])
        if self.disk_plugin is not None:
            self.disk_plugin.check(disk)
        else:
            from dibpy.outputs.qemu import check_image, check_vmdk_set

            check_image(disk, "vmdk", what=self.name)
            check_vmdk_set(disk, None, what=self.name)
