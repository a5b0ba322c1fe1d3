"""OVA: an OVF descriptor, a manifest and a streamOptimized VMDK in one tar.

The tar holds, in this order (the order OVF requires): ``NAME.ovf`` first, then
``NAME.mf`` (SHA256 digests of the other two), then ``NAME.vmdk``.  The virtual
hardware the descriptor asks for comes from variables (see doc/outputs.md):
``DIB_OVA_CPUS``, ``DIB_OVA_MEMORY_MB``, ``DIB_OVA_OS_ID``, ``DIB_OVA_OS_TYPE``,
``DIB_OVA_NIC``, ``DIB_OVA_HARDWARE_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dibpy import progress, run
from dibpy.errors import ConfigError, DibpyError
from dibpy.outputs import options as qopts
from dibpy.outputs.base import OutputOptions, OutputPlugin, open_tar
from dibpy.outputs.qemu import check_image, convert

NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "vmw": "http://www.vmware.com/schema/ovf",
}
STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
#: ustar's size field holds at most 8 GiB - 1; beyond that the GNU base-256 extension
USTAR_MAX = 8 * 1024**3 - 1
NICS = ("E1000", "E1000e", "VmxNet3", "PCNet32")


@dataclass(frozen=True)
class Hardware:
    cpus: int = 2
    memory_mb: int = 1024
    #: CIM operating system id (101: "Linux 2.6.x 64-bit")
    os_id: int = 101
    os_type: str = "otherLinux64Guest"
    nic: str = "VmxNet3"
    #: vmx-NN virtual hardware family
    hardware_version: int = 13
    adapter: str = "lsilogic"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], adapter: str = "lsilogic") -> Hardware:
        problems = []
        values: dict[str, Any] = {"adapter": adapter}
        for key, attr in (
            ("DIB_OVA_CPUS", "cpus"),
            ("DIB_OVA_MEMORY_MB", "memory_mb"),
            ("DIB_OVA_OS_ID", "os_id"),
            ("DIB_OVA_HARDWARE_VERSION", "hardware_version"),
        ):
            v = environ.get(key)
            if v:
                if not v.isdigit() or int(v) < 1:
                    problems.append(f"{key}={v}: not a positive integer")
                else:
                    values[attr] = int(v)
        if environ.get("DIB_OVA_OS_TYPE"):
            if not re.match(r"^[A-Za-z0-9_]+$", environ["DIB_OVA_OS_TYPE"]):
                problems.append(f"DIB_OVA_OS_TYPE={environ['DIB_OVA_OS_TYPE']}: not a name")
            values["os_type"] = environ["DIB_OVA_OS_TYPE"]
        if environ.get("DIB_OVA_NIC"):
            if environ["DIB_OVA_NIC"] not in NICS:
                problems.append(f"DIB_OVA_NIC={environ['DIB_OVA_NIC']}: one of {', '.join(NICS)}")
            values["nic"] = environ["DIB_OVA_NIC"]
        if problems:
            raise ConfigError("ova: " + "; ".join(problems), hint="see doc/outputs.md")
        return cls(**values)


def _q(prefix: str, tag: str) -> str:
    return f"{{{NS[prefix]}}}{tag}"


def _item(parent: ET.Element, fields: Mapping[str, str | int]) -> None:
    item = ET.SubElement(parent, _q("ovf", "Item"))
    # CIM requires the rasd elements in alphabetical order
    for key in sorted(fields):
        ET.SubElement(item, _q("rasd", key)).text = str(fields[key])


def ovf_descriptor(
    name: str, disk_file: str, disk_file_size: int, capacity: int, hw: Hardware
) -> bytes:
    """The OVF 1.0 descriptor of a VM with one disk and one network adapter."""
    for p, uri in NS.items():
        ET.register_namespace(p, uri)
    env = ET.Element(_q("ovf", "Envelope"), {_q("ovf", "version"): "1.0"})
    refs = ET.SubElement(env, _q("ovf", "References"))
    ET.SubElement(
        refs,
        _q("ovf", "File"),
        {
            _q("ovf", "href"): disk_file,
            _q("ovf", "id"): "file1",
            _q("ovf", "size"): str(disk_file_size),
        },
    )
    disks = ET.SubElement(env, _q("ovf", "DiskSection"))
    ET.SubElement(disks, _q("ovf", "Info")).text = "Virtual disk information"
    ET.SubElement(
        disks,
        _q("ovf", "Disk"),
        {
            _q("ovf", "capacity"): str(capacity),
            _q("ovf", "capacityAllocationUnits"): "byte",
            _q("ovf", "diskId"): "vmdisk1",
            _q("ovf", "fileRef"): "file1",
            _q("ovf", "format"): STREAM_OPTIMIZED,
        },
    )
    nets = ET.SubElement(env, _q("ovf", "NetworkSection"))
    ET.SubElement(nets, _q("ovf", "Info")).text = "The logical networks"
    net = ET.SubElement(nets, _q("ovf", "Network"), {_q("ovf", "name"): "VM Network"})
    ET.SubElement(net, _q("ovf", "Description")).text = "The VM Network network"
    vs = ET.SubElement(env, _q("ovf", "VirtualSystem"), {_q("ovf", "id"): name})
    ET.SubElement(vs, _q("ovf", "Info")).text = "A virtual machine"
    ET.SubElement(vs, _q("ovf", "Name")).text = name
    oss = ET.SubElement(
        vs,
        _q("ovf", "OperatingSystemSection"),
        {_q("ovf", "id"): str(hw.os_id), _q("vmw", "osType"): hw.os_type},
    )
    ET.SubElement(oss, _q("ovf", "Info")).text = "The guest operating system"
    vhw = ET.SubElement(vs, _q("ovf", "VirtualHardwareSection"))
    ET.SubElement(vhw, _q("ovf", "Info")).text = "Virtual hardware requirements"
    system = ET.SubElement(vhw, _q("ovf", "System"))
    for key, value in (
        ("ElementName", "Virtual Hardware Family"),
        ("InstanceID", "0"),
        ("VirtualSystemIdentifier", name),
        ("VirtualSystemType", f"vmx-{hw.hardware_version:02d}"),
    ):
        ET.SubElement(system, _q("vssd", key)).text = value
    _item(
        vhw,
        {
            "AllocationUnits": "hertz * 10^6",
            "Description": "Number of virtual CPUs",
            "ElementName": f"{hw.cpus} virtual CPU(s)",
            "InstanceID": 1,
            "ResourceType": 3,
            "VirtualQuantity": hw.cpus,
        },
    )
    _item(
        vhw,
        {
            "AllocationUnits": "byte * 2^20",
            "Description": "Memory size",
            "ElementName": f"{hw.memory_mb}MB of memory",
            "InstanceID": 2,
            "ResourceType": 4,
            "VirtualQuantity": hw.memory_mb,
        },
    )
    if hw.adapter == "ide":
        ctrl: dict[str, str | int] = {"ElementName": "IDE Controller 0", "ResourceType": 5}
    else:
        ctrl = {
            "ElementName": "SCSI Controller 0",
            "ResourceSubType": hw.adapter,
            "ResourceType": 6,
        }
    _item(vhw, {**ctrl, "Address": 0, "InstanceID": 3})
    _item(
        vhw,
        {
            "AddressOnParent": 0,
            "ElementName": "Hard disk 1",
            "HostResource": "ovf:/disk/vmdisk1",
            "InstanceID": 4,
            "Parent": 3,
            "ResourceType": 17,
        },
    )
    _item(
        vhw,
        {
            "AutomaticAllocation": "true",
            "Connection": "VM Network",
            "ElementName": "Network adapter 1",
            "InstanceID": 5,
            "ResourceSubType": hw.nic,
            "ResourceType": 10,
        },
    )
    ET.indent(env)
    return bytes(ET.tostring(env, encoding="utf-8", xml_declaration=True)) + b"\n"


def _sha256(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := f.read(4 * 1024 * 1024):
        h.update(chunk)
    return h.hexdigest()


def manifest(digests: Mapping[str, str]) -> bytes:
    return "".join(f"SHA256({n})= {d}\n" for n, d in digests.items()).encode()


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = path.stat().st_size
    info.mode = 0o644
    info.mtime = int(path.stat().st_mtime)
    with open(path, "rb") as f:
        tar.addfile(info, f)


def write_ova(
    raw: Path, dest: Path, name: str, create_opts: Mapping[str, str], hw: Hardware
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".ova-", dir=dest.parent))
    try:
        vmdk = tmp / f"{name}.vmdk"
        convert(raw, vmdk, "vmdk", create_opts=create_opts, label="ova")
        check_image(
            vmdk,
            "vmdk",
            virtual_size=raw.stat().st_size,
            specific={"create-type": "streamOptimized"},
            what="ova disk",
        )
        ovf = tmp / f"{name}.ovf"
        ovf.write_bytes(
            ovf_descriptor(name, vmdk.name, vmdk.stat().st_size, raw.stat().st_size, hw)
        )
        digests = {}
        for p in (ovf, vmdk):
            with open(p, "rb") as f:
                digests[p.name] = _sha256(f)
        mf = tmp / f"{name}.mf"
        mf.write_bytes(manifest(digests))
        fmt = tarfile.USTAR_FORMAT if vmdk.stat().st_size <= USTAR_MAX else tarfile.GNU_FORMAT
        with (
            progress.watch("ova", vmdk.stat().st_size, progress.file_growing(dest)),
            tarfile.open(dest, "w", format=fmt) as tar,
        ):
            for p in (ovf, mf, vmdk):
                _add(tar, p, p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_ova(path: Path, capacity: int | None = None) -> dict[str, Any]:
    """Check an OVA's structure, descriptor, manifest and disk; return a summary."""
    try:
        return _check_ova(path, capacity)
    except (tarfile.TarError, EOFError) as e:
        raise DibpyError(f"ova {path} is truncated or corrupt: {e}") from None


def _check_ova(path: Path, capacity: int | None) -> dict[str, Any]:
    tar = open_tar(path, "r:", "ova")
    with tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        if not names or not names[0].endswith(".ovf"):
            raise DibpyError(
                f"ova {path}: the first file must be the .ovf descriptor (found {names[:1]})"
            )
        if sum(n.endswith(".ovf") for n in names) != 1:
            raise DibpyError(f"ova {path}: more than one .ovf descriptor")
        by_name = {m.name: m for m in members}
        f = tar.extractfile(members[0])
        assert f is not None
        ovf_bytes = f.read()
        try:
            env = ET.fromstring(ovf_bytes)
        except ET.ParseError as e:
            raise DibpyError(f"ova {path}: {names[0]} is not valid XML: {e}") from None
        if env.tag != _q("ovf", "Envelope"):
            raise DibpyError(f"ova {path}: {names[0]} is not an OVF Envelope ({env.tag})")
        files: dict[str, str] = {}
        for fe in env.iterfind("ovf:References/ovf:File", NS):
            href = fe.get(_q("ovf", "href"), "")
            fid = fe.get(_q("ovf", "id"), "")
            if href not in by_name:
                raise DibpyError(f"ova {path}: the descriptor names {href!r}, not in the archive")
            size = fe.get(_q("ovf", "size"))
            if size is not None and int(size) != by_name[href].size:
                raise DibpyError(
                    f"ova {path}: {href} is {by_name[href].size} bytes, the descriptor says {size}"
                )
            files[fid] = href
        disks = list(env.iterfind("ovf:DiskSection/ovf:Disk", NS))
        if not disks:
            raise DibpyError(f"ova {path}: the descriptor has no disk")
        mfs = [n for n in names if n.endswith(".mf")]
        if mfs:
            if names.index(mfs[0]) != 1:
                raise DibpyError(f"ova {path}: the manifest must follow the descriptor")
            mf = tar.extractfile(by_name[mfs[0]])
            assert mf is not None
            for line in mf.read().decode().splitlines():
                m = re.match(r"^(SHA256|SHA1)\((.+)\)= ?([0-9a-fA-F]+)$", line.strip())
                if not m:
                    raise DibpyError(f"ova {path}: bad manifest line {line!r}")
                algo, fname, digest = m.groups()
                if fname not in by_name:
                    raise DibpyError(
                        f"ova {path}: the manifest names {fname!r}, not in the archive"
                    )
                data = tar.extractfile(by_name[fname])
                assert data is not None
                h = hashlib.new(algo.lower())
                while chunk := data.read(4 * 1024 * 1024):
                    h.update(chunk)
                if h.hexdigest() != digest.lower():
                    raise DibpyError(f"ova {path}: {fname} does not match its {algo} digest")
        summary: dict[str, Any] = {"files": names, "disks": []}
        for d in disks:
            href = files.get(d.get(_q("ovf", "fileRef"), ""), "")
            if href not in by_name:
                raise DibpyError(f"ova {path}: a disk refers to a missing file")
            member = by_name[href]
            spec = {
                "driver": "vmdk",
                "file": {
                    "driver": "raw",
                    "offset": member.offset_data,
                    "size": member.size,
                    "file": {"driver": "file", "filename": str(Path(path).resolve())},
                },
            }
            # qemu-img reads the disk in place inside the tar
            r = run.run(["qemu-img", "check", "json:" + json.dumps(spec)], check=False)
            if r.returncode != 0:
                raise DibpyError(
                    f"ova {path}: its disk {href} fails qemu-img check: {r.stderr.strip()}"
                )
            info = json.loads(
                run.output(["qemu-img", "info", "--output=json", "json:" + json.dumps(spec)])
            )
            want = d.get(_q("ovf", "capacity"))
            if want is not None and int(want) != info.get("virtual-size"):
                raise DibpyError(
                    f"ova {path}: disk {href} holds {info.get('virtual-size')} bytes, "
                    f"the descriptor says {want}"
                )
            if capacity is not None and info.get("virtual-size") != capacity:
                raise DibpyError(
                    f"ova {path}: disk {href} is {info.get('virtual-size')} bytes, "
                    f"expected {capacity}"
                )
            summary["disks"].append({"file": href, "virtual-size": info.get("virtual-size")})
    return summary


class Ova(OutputPlugin):
    name = "ova"
    extension = "ova"
    programs = ("qemu-img",)

    def __init__(self) -> None:
        self.capacity: int | None = None

    def validate(self, opts: OutputOptions) -> None:
        create = qopts.resolve("ova", opts.qemu_img_options, opts.environ)
        Hardware.from_env(opts.environ, create.get("adapter_type", "lsilogic"))

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        create = qopts.resolve("ova", opts.qemu_img_options, opts.environ)
        create.setdefault("adapter_type", "lsilogic")
        hw = Hardware.from_env(opts.environ, create["adapter_type"])
        name = opts.image_name or dest.name.lstrip(".").split(".")[0] or "disk"
        self.capacity = raw.stat().st_size
        write_ova(raw, dest, name, create, hw)

    def check(self, dest: Path) -> None:
        check_ova(dest, self.capacity)
