"""The worked examples of doc/examples/, run from the pages themselves.

Each page's ``sh`` blocks marked ``<!-- example-test: run -->`` (the build) and
``<!-- example-test: check -->`` (the outside checks) are run as written, in order, in
one bash (``set -euo pipefail``) from the top of the checkout with HOME in a temporary
directory (the pages write into ``~/images``).  Then each test checks the results again
here, from outside, with sfdisk, blkid, mtools, ntfs-3g, xmllint, qemu-img and QEMU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = REPO / "doc" / "examples"
MARKED = re.compile(r"<!-- example-test: (run|check) -->\n```sh\n(.*?)\n```", re.S)
MIB = 1 << 20


def blocks(page: str) -> list[tuple[str, str]]:
    """(kind, script) of each marked block of doc/examples/PAGE, in page order."""
    found = [(m[1], m[2]) for m in MARKED.finditer((PAGES / page).read_text())]
    assert found, f"doc/examples/{page} has no marked sh block"
    return found


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def run_page(page: str, home: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the page's marked blocks; fail the test (with the output) if one fails."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    script = "set -euo pipefail\n" + "\n".join(s for _, s in blocks(page)) + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_") and k != "ELEMENTS_PATH"}
    env.update(
        HOME=str(home),
        TMP_DIR=str(home / "tmp"),
        DIB_IMAGE_CACHE=str(home / "cache"),
        PATH=f"{Path(sys.executable).parent}:{REPO / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    r = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"doc/examples/{page}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
    return r


def out(*argv: str | Path, ok: tuple[int, ...] = (0,)) -> str:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert r.returncode in ok, f"{argv}: {r.returncode}: {r.stderr[-500:]}"
    return r.stdout


def qinfo(p: Path, fmt: str | None = None) -> dict[str, object]:
    args = ["-f", fmt] if fmt else []
    return json.loads(out("qemu-img", "info", "--output=json", *args, p))  # type: ignore[no-any-return]


def test_every_page_is_linked_and_has_marked_blocks() -> None:
    index = (PAGES / "index.md").read_text()
    pages = sorted(p.name for p in PAGES.glob("*.md") if p.name != "index.md")
    assert len(pages) == 5, pages
    for page in pages:
        assert f"({page})" in index, f"doc/examples/index.md does not link {page}"
        kinds = [k for k, _ in blocks(page)]
        assert "run" in kinds, page
    assert "examples/index.md" in (REPO / "doc" / "index.md").read_text()


# -- a. Nano Server GPT ------------------------------------------------------------------

ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
MSR = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"


def test_nano_server_gpt(tmp_path: Path, no_leaks: None) -> None:
    need("mkntfs", "ntfsls", "ntfsinfo", "ntfscat", "mdir", "mkfs.vfat", "partx")
    r = run_page("nano-server-gpt.md", tmp_path)
    raw = tmp_path / "images" / "nano.raw"
    parts = json.loads(out("sfdisk", "--json", raw))["partitiontable"]["partitions"]
    assert [(p["type"], p["size"] * 512 // MIB) for p in parts[:2]] == [(ESP, 100), (MSR, 128)]
    assert parts[2]["type"] == BASIC_DATA and len(parts) == 3
    esp, msr, data = ((p["start"] * 512, p["size"] * 512) for p in parts)
    probe = out("blkid", "-p", "-O", str(esp[0]), "-S", str(esp[1]), "-o", "export", raw)
    assert "TYPE=vfat" in probe and "VERSION=FAT32" in probe, probe
    # the MSR: blkid finds no filesystem (exit 2), as the page's own check printed
    assert out("blkid", "-p", "-O", str(msr[0]), "-S", str(msr[1]), raw, ok=(2,)) == ""
    assert "MSR: no filesystem (2)" in r.stdout
    listing = out("mdir", "-/", "-b", "-i", f"{raw}@@{esp[0]}", "::/")
    assert "::/EFI/Boot/bootx64.efi" in listing.split(), listing
    assert "::/EFI/Microsoft/Boot/BCD" in listing.split(), listing
    ntfs = tmp_path / "images" / "nano-data.ntfs"  # the page's copy; check it is the same
    assert ntfs.stat().st_size == data[1]
    assert "TYPE=ntfs" in out("blkid", "-p", "-o", "export", ntfs)
    assert "Volume Name: Windows" in out("ntfsinfo", "-m", ntfs)
    top = set(out("ntfsls", "-p", "/", ntfs).split()) - {".", ".."}
    assert top == {"Windows", "efi"}, top  # no dev proc sys tmp etc: so no etc/fstab
    assert out("ntfscat", ntfs, "/Windows/System32/readme.txt") == "nano server data\n"


# -- b. VM-manager templates --------------------------------------------------------------


def test_vmmgr_templates(tmp_path: Path, no_leaks: None) -> None:
    need("mkntfs", "mkfs.vfat", "xmllint", "file")
    r = run_page("vmmgr-templates.md", tmp_path)
    images = tmp_path / "images"
    assert "with CRLF line terminators" in r.stdout.split("windows.cmd:", 1)[1].splitlines()[0]
    for name, members, script, disk, kind in (
        ("win", ["metainfo.xml", "win2019.hddimage", "windows.cmd"], "windows.cmd",
         "win2019.hddimage", "windows"),
        ("tiny", ["metainfo.xml", "setup.sh", "tiny.hddimage"], "setup.sh", "tiny.hddimage",
         "linux"),
    ):  # fmt: skip
        archive = images / f"{name}.vmmgr.tar.gz"
        with tarfile.open(archive) as t:
            assert sorted(t.getnames()) == members
            assert all(m.isfile() for m in t.getmembers())
        root = ET.parse(images / f"{name}.t" / "metainfo.xml").getroot()
        text = ET.tostring(root, encoding="unicode")
        assert kind in text.lower(), text[:500]
        body = (images / f"{name}.t" / script).read_bytes()
        crlf = body.count(b"\r\n") == body.count(b"\n") > 0
        assert crlf == (kind == "windows"), script
        assert qinfo(images / f"{name}.t" / disk)["format"] == "raw"
        meta = json.loads((images / f"{name}.vmmgr.metadata.json").read_text())
        assert meta["file_name"] == f"{name}.vmmgr.tar.gz", meta
    # the Windows template's disk is the Nano Server GPT disk
    table = json.loads(out("sfdisk", "--json", images / "win.t" / "win2019.hddimage"))
    assert table["partitiontable"]["label"] == "gpt"


# -- c. VHD / VMDK / VMware ---------------------------------------------------------------


def test_vhd_vmdk_and_vmware(tmp_path: Path, no_leaks: None) -> None:
    run_page("vhd-vmdk-vmware.md", tmp_path)
    images = tmp_path / "images"
    raw = images / "disk.raw"
    size = raw.stat().st_size
    dyn, fixed = qinfo(images / "disk.vhd"), qinfo(images / "fixed.vhd", "vpc")
    assert dyn["format"] == fixed["format"] == "vpc"
    assert dyn["virtual-size"] == fixed["virtual-size"] == size
    assert (images / "disk.vhd").stat().st_size < size  # dynamic: sparse blocks
    assert (images / "fixed.vhd").stat().st_size == size + 512  # fixed: data + footer
    vmdk = qinfo(images / "from-vhd.vmdk")
    assert vmdk["format"] == "vmdk" and vmdk["virtual-size"] == size
    for conv, fmt in (("from-vhd.vmdk", "vmdk"), ("disk.vmdk", "vmdk"), ("fixed.vhd", "vpc")):
        out("qemu-img", "compare", "-f", "raw", "-F", fmt, raw, images / conv)
    vmx = {}
    for line in (images / "disk.vmx").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition(" = ")
            assert sep, f"disk.vmx: not key = value: {line!r}"
            assert value.startswith('"') and value.endswith('"'), line
            vmx[key] = value.strip('"')
    disks = [k for k, v in vmx.items() if k.endswith(".fileName") and v == "disk.vmdk"]
    assert len(disks) == 1, vmx
    assert vmx[disks[0].replace(".fileName", ".present")] == "TRUE"
    assert vmx["firmware"] == "bios" or "firmware" not in vmx  # MBR disk: BIOS boot
    assert "guestOS" in vmx and "virtualHW.version" in vmx


# -- d. centos7 baremetal dhcp-all-interfaces grub2 ---------------------------------------

REQUEST = ["baremetal", "dhcp-all-interfaces", "grub2"]
#: no element only dibpy resolves here (grub2 is GRUB's packages in both)
ONLY_DIBPY: set[str] = set()


def test_centos7_baremetal_resolves_like_diskimage_builder(tmp_path: Path) -> None:
    from tests.unit.test_element_sets_vs_dib import dib_sets

    run_page("centos7-baremetal.md", tmp_path, timeout=120)
    ours7 = {
        e["name"] for e in json.loads((tmp_path / "centos7-elements.json").read_text())["elements"]
    }
    ours = {
        e["name"] for e in json.loads((tmp_path / "centos-elements.json").read_text())["elements"]
    }
    theirs = dib_sets([["centos7", *REQUEST], ["centos", *REQUEST]])
    # diskimage-builder 3.43.0 no longer has centos7: the page says so
    assert theirs[" ".join(["centos7", *REQUEST])] == "MissingElementException"
    centos = theirs[" ".join(["centos", *REQUEST])]
    assert isinstance(centos, list), centos
    assert ours - set(centos) == ONLY_DIBPY and set(centos) <= ours
    # centos7 is centos of release 7: the same elements as diskimage-builder's centos
    expected7 = (set(centos) - {"centos"}) | {"centos7"} | ONLY_DIBPY
    assert ours7 == expected7, (sorted(ours7 - expected7), sorted(expected7 - ours7))


def test_centos7_baremetal_build(tmp_path: Path, no_leaks: None) -> None:
    """The page's real build, when a CentOS image directory answers (probed)."""
    from tests.e2e.test_centos import mirror_reason

    reason = mirror_reason("DIB_CLOUD_IMAGES", "sha256sum.txt")
    if reason:
        pytest.skip(reason)
    work = tmp_path / "tmp"
    work.mkdir()
    env = {**os.environ, "TMP_DIR": str(work)}
    command = next(
        line for line in (PAGES / "centos7-baremetal.md").read_text().splitlines()
        if line.startswith("disk-image-create ")
    )  # fmt: skip
    r = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    for ext in ("qcow2", "vmlinuz", "initrd"):
        assert (tmp_path / f"centos7-bm.{ext}").is_file(), ext


# -- e. MBR + GRUB + ext2 + multiboot kernel, booted --------------------------------------


def test_mbr_grub_multiboot_boots(tmp_path: Path, no_leaks: None) -> None:
    need("qemu-system-x86_64", "grub-mkimage", "partx")
    if not Path("/usr/lib/grub/i386-pc/boot.img").is_file():
        pytest.skip("no /usr/lib/grub/i386-pc/boot.img (grub-pc-bin is not installed)")
    run_page("mbr-grub-multiboot.md", tmp_path)
    images = tmp_path / "images"
    raw, qcow2 = images / "hello.raw", images / "hello.qcow2"
    table = json.loads(out("sfdisk", "--json", raw))["partitiontable"]
    assert table["label"] == "dos" and len(table["partitions"]) == 1
    part = table["partitions"][0]
    assert part["start"] == 2048 and part["type"] == "83" and part.get("bootable") is True
    probe = out("blkid", "-p", "-O", str(part["start"] * 512), "-o", "export", raw)
    assert "TYPE=ext2" in probe and "LABEL=classic-root" in probe, probe
    # GRUB's boot code in the MBR, its core image right after it
    head = raw.read_bytes()[:1024]
    assert b"GRUB" in head[:440] and head[510:512] == b"\x55\xaa"
    info = qinfo(qcow2)
    data = info["format-specific"]["data"]  # type: ignore[index]
    assert info["cluster-size"] == 128 * 1024 and data["lazy-refcounts"] is True, info
    out("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, qcow2)
    # the kernel file on the ext2 partition, read with e2fsprogs' debugfs
    part_img = tmp_path / "root.ext2"
    out("dd", f"if={raw}", f"of={part_img}", "bs=1M", "skip=1", "conv=sparse", "status=none")
    listing = out("debugfs", "-R", "ls -p /", part_img)
    names = {f.split("/")[5] for f in listing.split() if f.count("/") >= 6}
    assert "boot" in names and not names & {"dev", "proc", "sys", "tmp", "etc"}, names
    kernel = subprocess.run(
        ["debugfs", "-R", "cat /boot/hello.bin", str(part_img)], capture_output=True, check=True
    ).stdout
    assert kernel[:4] == b"\x02\xb0\xad\x1b"  # the multiboot magic
    serial = (images / "serial.log").read_text(errors="replace")
    assert "GRUB" in serial and "hello from multiboot" in serial, serial[-1000:]
