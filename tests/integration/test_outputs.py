"""Every output format from one real partitioned disk image and its tree, each checked."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from dibpy import outputs
from dibpy.errors import DibpyError
from dibpy.outputs import OutputOptions
from dibpy.outputs.ova import check_ova
from tests.integration.test_outputs_support import MIB, Part, make_disk, make_tree

IMAGE_TYPES = ("raw", "qcow2", "vhd", "vhdx", "vmdk", "ova", "vmmgr")
TREE_TYPES = ("tar", "tgz", "squashfs", "docker")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    w = tmp_path_factory.mktemp("img")
    tree = make_tree(w / "tree")
    disk = make_disk(
        w / "disk.raw",
        "gpt",
        [Part("vfat", 20, "EFI", esp=True), Part("ext4", 40, "root", tree=tree)],
    )
    return disk.path, tree


def qinfo(p: Path, fmt: str | None = None) -> dict[str, object]:
    argv = ["qemu-img", "info", "--output=json", *(["-f", fmt] if fmt else []), str(p)]
    out = subprocess.run(argv, capture_output=True, check=True, text=True).stdout
    info: dict[str, object] = json.loads(out)
    return info


def test_every_format_in_parallel(built: tuple[Path, Path], tmp_path: Path, no_leaks: None) -> None:
    raw, tree = built
    opts = OutputOptions(image_name="img", environ={"DIB_VMMGR_OSNAME": "Img-1"})
    img = [(outputs.get(t), tmp_path / f"img.{outputs.get(t).extension}") for t in IMAGE_TYPES]
    trees = [(outputs.get(t), tmp_path / f"img.{outputs.get(t).extension}") for t in TREE_TYPES]
    outputs.validate([p for p, _ in img + trees], opts)
    written = outputs.write_all(trees, tree, opts, tree=True)
    written += outputs.write_all(img, raw, opts)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [f"img.{outputs.get(t).extension}" for t in IMAGE_TYPES + TREE_TYPES]
        + ["img.vmmgr.metadata.json"]
    )
    assert not list(tmp_path.glob(".*"))
    size = raw.stat().st_size
    # QEMU reads every bootable format, with the disk's size
    for t, fmt in (("qcow2", "qcow2"), ("vhd", "vpc"), ("vhdx", "vhdx"), ("vmdk", "vmdk")):
        info = qinfo(tmp_path / f"img.{t}")
        assert info["format"] == fmt and info["virtual-size"] == size, (t, info)
    # qcow2 is compressed by default: far smaller than the data
    assert (tmp_path / "img.qcow2").stat().st_size < size // 4
    ova = check_ova(tmp_path / "img.ova", size)
    assert ova["files"] == ["img.ovf", "img.mf", "img.vmdk"]
    listing = subprocess.run(
        ["tar", "-tf", str(tmp_path / "img.tar")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "./etc/hostname" in listing and "./proc/" in listing
    assert not [n for n in listing if "must-not-be-copied" in n]
    sq = subprocess.run(
        ["unsquashfs", "-l", str(tmp_path / "img.squash")], capture_output=True, text=True
    ).stdout.split()
    assert "squashfs-root/bin/hello" in sq and not [n for n in sq if "must-not" in n]
    with tarfile.open(tmp_path / "img.docker.tar") as t:
        m = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
        layer = t.extractfile(m[0]["Layers"][0])
        assert layer is not None
        with tarfile.open(fileobj=layer) as lt:
            lnames = lt.getnames()
    assert "etc/hostname" in lnames and "proc" in lnames
    assert not [n for n in lnames if n.startswith("./") or "must-not" in n]
    meta = json.loads((tmp_path / "img.vmmgr.metadata.json").read_text())
    assert meta["name"] == "Img-1" and meta["file_name"] == "img.vmmgr.tar.gz"
    assert meta["image_name"] == "img.hddimage"


@pytest.mark.parametrize("kind", ["windows", "linux"])
def test_vmmgr_templates_as_documented(built: tuple[Path, Path], tmp_path: Path, kind: str) -> None:
    """A Windows and a Linux template from a real disk: the documented metainfo.xml (by
    xmllint against our schema), the script as asked, the disk raw and whole."""
    import shutil

    from dibpy.outputs import vmmgr_template as vmmgr

    raw, _ = built
    if kind == "windows":
        env = {"DIB_VMMGR_OSNAME": "Windows-Server-2019", "DIB_VMMGR_HDDIMAGE": "win2019.hddimage"}
        env["DIB_VMMGR_TAGS"] = "windows,windows2019"
        files = ["metainfo.xml", "win2019.hddimage", "windows.cmd"]
    else:
        env = {"DIB_VMMGR_OSNAME": "Debian-12", "DIB_VMMGR_INSTALLDRIVE": "debian.sh"}
        env["DIB_VMMGR_DISK_FORMAT"] = "qcow2"
        files = ["debian.sh", "img.qcow2", "metainfo.xml"]
    opts = OutputOptions(image_name="img", environ=env)
    dest = tmp_path / "img.vmmgr.tar.gz"
    outputs.write_all([(outputs.get("vmmgr"), dest)], raw, opts)
    out = tmp_path / "x"
    out.mkdir()
    with tarfile.open(dest) as t:
        assert sorted(t.getnames()) == files
        t.extractall(out, filter="data")
    if shutil.which("xmllint"):
        schema = str(vmmgr.xml_schema_path())
        subprocess.run(
            ["xmllint", "--noout", "--schema", schema, str(out / "metainfo.xml")],
            check=True,
            capture_output=True,
        )
    script = (out / files[0 if kind == "linux" else 2]).read_bytes()
    assert b"($PASS)" in script
    assert (script.count(b"\r\n") == script.count(b"\n")) == (kind == "windows")
    disk = out / files[1]
    fmt = "raw" if kind == "windows" else "qcow2"
    assert qinfo(disk, fmt)["format"] == fmt
    subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", fmt, str(raw), str(disk)],
        check=True,
        capture_output=True,
    )


def test_qemu_format_options_are_applied(built: tuple[Path, Path], tmp_path: Path) -> None:
    raw, _ = built
    opts = OutputOptions(
        qemu_img_options="qcow2:compat=0.10,qcow2:cluster_size=128k,vmdk:subformat=streamOptimized"
        ",vhd:subformat=fixed,vhdx:subformat=fixed",
    )
    todo = [(outputs.get(t), tmp_path / f"o.{t}") for t in ("qcow2", "vmdk", "vhd", "vhdx")]
    outputs.write_all(todo, raw, opts)
    q = qinfo(tmp_path / "o.qcow2")
    assert q["cluster-size"] == 128 * 1024
    assert q["format-specific"]["data"]["compat"] == "0.10"  # type: ignore[index]
    v = qinfo(tmp_path / "o.vmdk")
    assert v["format-specific"]["data"]["create-type"] == "streamOptimized"  # type: ignore[index]
    # a fixed VHD is the raw data plus a 512-byte footer
    assert (tmp_path / "o.vhd").stat().st_size == raw.stat().st_size + 512
    z = OutputOptions(qemu_img_options="compression_type=zstd,lazy_refcounts=on")
    outputs.write_all([(outputs.get("qcow2"), tmp_path / "z.qcow2")], raw, z)
    data = qinfo(tmp_path / "z.qcow2")["format-specific"]["data"]  # type: ignore[index]
    assert data["compression-type"] == "zstd" and data["lazy-refcounts"] is True


def test_vhd_size_is_rounded_up_to_a_whole_mib(tmp_path: Path) -> None:
    raw = tmp_path / "odd.raw"
    raw.write_bytes(b"\x5a" * (3 * MIB + 12345))
    for sub in ("dynamic", "fixed"):
        dest = tmp_path / f"odd-{sub}.vhd"
        outputs.write_all(
            [(outputs.get("vhd"), dest)], raw, OutputOptions(qemu_img_options=f"subformat={sub}")
        )
        # qemu probes a dynamic VHD; a fixed one (a footer only) must be named
        assert qinfo(dest, "vpc")["virtual-size"] == 4 * MIB
    # the build's raw image is untouched
    assert raw.stat().st_size == 3 * MIB + 12345


def test_a_damaged_output_fails_its_check(built: tuple[Path, Path], tmp_path: Path) -> None:
    raw, _ = built
    for t in ("qcow2", "vmdk", "vhdx", "ova"):
        plugin = outputs.get(t)
        dest = tmp_path / f"d.{t}"
        plugin.write(raw, dest, OutputOptions(qemu_img_options=""))
        plugin.check(dest)
        # cut the file short: metadata or data now points past its end
        with open(dest, "r+b") as f:
            f.truncate(dest.stat().st_size // 3)
        with pytest.raises(DibpyError) as e:
            plugin.check(dest)
        assert str(dest) in str(e.value), (t, str(e.value))


def test_a_wrong_format_fails_the_check(tmp_path: Path) -> None:
    p = tmp_path / "not.qcow2"
    p.write_bytes(bytes(MIB))
    with pytest.raises(DibpyError, match="not a qcow2 image"):
        outputs.get("qcow2").check(p)
    with pytest.raises(DibpyError):
        outputs.get("squashfs").check(p)
    # zeros read as an empty tar archive
    with pytest.raises(DibpyError, match="is empty"):
        outputs.get("tar").check(p)
    p.write_bytes(b"junk" * 1000)
    with pytest.raises(DibpyError, match="not a readable tar"):
        outputs.get("tar").check(p)


#: one example of each pair dibpy refuses (dibpy.outputs.options.CONFLICTS), as qemu-img
#: would be asked for it: (output, -o options, compressed)
REFUSED_PAIRS = {
    ("preallocation", "-c"): ("qcow2", "preallocation=metadata", True),
    ("compat", "lazy_refcounts"): ("qcow2", "compat=0.10,lazy_refcounts=on", False),
    ("compat", "compression_type"): ("qcow2", "compat=0.10,compression_type=zstd", False),
    ("compat", "refcount_bits"): ("qcow2", "compat=0.10,refcount_bits=8", False),
    ("compat", "extended_l2"): ("qcow2", "compat=0.10,extended_l2=on", False),
    ("extended_l2", "cluster_size"): ("qcow2", "extended_l2=on,cluster_size=4k", False),
    ("compat6", "hwversion"): ("vmdk", "compat6=on,hwversion=6", False),
}


def test_every_pair_dibpy_refuses_is_refused_by_qemu_img(tmp_path: Path) -> None:
    """The rules are grounded: qemu-img itself fails on each, and passes without the pair."""
    from dibpy.outputs import options as qopts

    assert {c.keys for c in qopts.CONFLICTS} == set(REFUSED_PAIRS)
    src = tmp_path / "src.raw"
    src.write_bytes(b"\1" * MIB)
    for keys, (output, opts, compressed) in REFUSED_PAIRS.items():
        with pytest.raises(DibpyError, match="cannot go together"):
            qopts.resolve(output, opts, {}, compressed=compressed)
        fmt = qopts.FORMATS[output][0]
        argv = ["qemu-img", "convert", "-f", "raw", "-O", fmt, *(["-c"] if compressed else [])]
        dest = tmp_path / f"out.{fmt}"
        r = subprocess.run([*argv, "-o", opts, str(src), str(dest)], capture_output=True)
        assert r.returncode != 0, (keys, opts)
        # either option alone is fine: it is the pair qemu-img refuses
        plain = argv[:-1] if compressed else argv
        alone = [["-o", o] for o in opts.split(",")] if not compressed else [["-o", opts]]
        if compressed:
            alone.append(["-c"])
        for extra in alone:
            r = subprocess.run([*plain, *extra, str(src), str(dest)], capture_output=True)
            assert r.returncode == 0, (keys, extra, r.stderr)
