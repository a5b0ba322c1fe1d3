"""Split VMDKs and the VMware Workstation bundle, checked with qemu-img and our own .vmx reader.

One sparse disk over 4 GiB (so a split VMDK has three 2 GiB extents) with a GPT, an EFI
system partition and a Debian-like root, written once for the module.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from dibpy import outputs
from dibpy.build import _keep_old, write_checksums
from dibpy.convert import convert_image
from dibpy.errors import DibpyError
from dibpy.outputs import OutputOptions
from tests.integration.test_outputs_support import Part, make_disk, make_tree

SPLIT = {"twoGbMaxExtentSparse": "s", "twoGbMaxExtentFlat": "f"}


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("vmware")
    tree = make_tree(w / "tree")
    (tree / "usr/lib/os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian"\n')
    parts = [Part("vfat", 8, "ESP", esp=True), Part("ext4", 16, "root", tree=tree)]
    d = make_disk(w / "disk.raw", "gpt", parts, extra_mib=4200)
    return d.path


def same(a: Path, b: Path) -> bool:
    r = subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", str(a), str(b)], check=False)
    return r.returncode == 0


def qinfo_type(p: Path) -> str:
    out = subprocess.run(
        ["qemu-img", "info", str(p)], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"create type: (\S+)", out)
    assert m, out
    return m.group(1)


@pytest.mark.parametrize("subformat", list(SPLIT))
def test_split_vmdk_convert_target(disk: Path, tmp_path: Path, subformat: str) -> None:
    dest = tmp_path / "x.vmdk"
    opts = OutputOptions(qemu_img_options=f"subformat={subformat}")
    written = convert_image(disk, dest, opts=opts)
    letter = SPLIT[subformat]
    want = ["x.vmdk", *(f"x-{letter}{i:03d}.vmdk" for i in (1, 2, 3))]
    assert [p.name for p in written] == want
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(want)
    assert qinfo_type(dest) == subformat
    assert same(disk, dest)
    # replaced as a whole: a smaller disk leaves no stale extent behind
    small = tmp_path / "small.raw"
    small.write_bytes(b"\1" * 1024 * 1024)
    convert_image(small, dest, opts=opts, in_format="raw", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["small.raw", "x.vmdk", f"x-{letter}001.vmdk"]
    )
    assert same(small, dest)


def test_split_vmdk_old_image_and_checksums(disk: Path, tmp_path: Path) -> None:
    plugin = outputs.get("vmdk")
    opts = OutputOptions(environ={"DIB_VMDK_SUBFORMAT": "twoGbMaxExtentSparse"})
    dest = tmp_path / "img.vmdk"
    outputs.write_one(plugin, disk, dest, opts, keep_old=lambda d: _keep_old(d, False))
    write_checksums(dest, ["sha256"])
    outputs.write_one(outputs.get("vmdk"), disk, dest, opts, keep_old=lambda d: _keep_old(d, False))
    names = sorted(p.name for p in tmp_path.iterdir())
    old = [n for n in names if re.fullmatch(r"img-[0-9.-]+\.vmdk", n)]
    assert len(old) == 1, names
    stem = old[0][: -len(".vmdk")]
    # the old set moved as one (its checksum with it) and still opens: its names rewritten
    assert {f"{stem}-s00{i}.vmdk" for i in (1, 2, 3)} <= set(names)
    assert f"{old[0]}.sha256" in names and "img.vmdk.sha256" not in names
    assert same(disk, tmp_path / old[0])
    assert "img-s001.vmdk" not in (tmp_path / old[0]).read_text()
    # the new set: one checksum file with a line per file, which sha256sum -c accepts
    write_checksums(dest, ["sha256"])
    lines = (tmp_path / "img.vmdk.sha256").read_text().splitlines()
    assert [ln.split()[1] for ln in lines] == ["img.vmdk", *(f"img-s00{i}.vmdk" for i in (1, 2, 3))]
    subprocess.run(["sha256sum", "-c", "--quiet", "img.vmdk.sha256"], cwd=tmp_path, check=True)
    assert same(disk, dest)


def test_a_failed_split_write_leaves_nothing(
    disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a qemu-img that writes the whole set, then fails
    fake = tmp_path / "bin"
    fake.mkdir()
    real = subprocess.run(
        ["sh", "-c", "command -v qemu-img"], capture_output=True, text=True
    ).stdout.strip()
    (fake / "qemu-img").write_text(
        f'#!/bin/sh\n{real} "$@" || exit $?\n[ "$1" = convert ] && exit 3\nexit 0\n'
    )
    (fake / "qemu-img").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    out = tmp_path / "out"
    with pytest.raises(DibpyError, match="qemu-img"):
        convert_image(
            disk,
            out / "x.vmdk",
            opts=OutputOptions(qemu_img_options="subformat=twoGbMaxExtentFlat"),
        )
    assert list(out.iterdir()) == []


def read_vmx(path: Path) -> dict[str, str]:
    """An independent reader: ``key = "value"`` lines, nothing else allowed."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r'([\w.:]+) = "([^"]*)"', line)
        assert m, line
        assert m.group(1) not in out, f"{m.group(1)} twice"
        out[m.group(1)] = m.group(2)
    return out


def test_vmware_bundle(disk: Path, tmp_path: Path) -> None:
    opts = OutputOptions(image_name="vm", environ={"DIB_VMWARE_MEMORY_MB": "2048"})
    written = outputs.write_one(outputs.get("vmware"), disk, tmp_path / "vm.vmx", opts)
    assert [p.name for p in written] == ["vm.vmx", "vm.vmdk"]
    vmx = read_vmx(tmp_path / "vm.vmx")
    assert vmx["guestOS"] == "debian12-64"
    assert vmx["firmware"] == "efi"  # the disk has an EFI system partition
    assert vmx["memsize"] == "2048" and vmx["numvcpus"] == "2"
    assert vmx["scsi0.virtualDev"] == "pvscsi" and vmx["ethernet0.virtualDev"] == "vmxnet3"
    assert vmx["scsi0:0.fileName"] == "vm.vmdk"
    assert qinfo_type(tmp_path / vmx["scsi0:0.fileName"]) == "monolithicSparse"
    assert same(disk, tmp_path / "vm.vmdk")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm.vmdk", "vm.vmx"]


def test_vmware_bundle_split_bios_other(tmp_path: Path) -> None:
    # no partition table, no OS: bios firmware, other-64, SATA and e1000e
    raw = tmp_path / "blank.raw"
    with open(raw, "wb") as f:
        f.truncate(3 << 30)
    env = {"DIB_VMWARE_SUBFORMAT": "twoGbMaxExtentSparse"}
    out = tmp_path / "o"
    written = outputs.write_one(
        outputs.get("vmware"), raw, out / "b.vmx", OutputOptions(environ=env)
    )
    assert [p.name for p in written] == ["b.vmx", "b.vmdk", "b-s001.vmdk", "b-s002.vmdk"]
    vmx = read_vmx(out / "b.vmx")
    assert (vmx["guestOS"], vmx["firmware"]) == ("other-64", "bios")
    assert vmx["sata0:0.fileName"] == "b.vmdk" and vmx["ethernet0.virtualDev"] == "e1000e"
    assert qinfo_type(out / "b.vmdk") == "twoGbMaxExtentSparse"
    assert same(raw, out / "b.vmdk")
