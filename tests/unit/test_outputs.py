"""Output plugins without root: option parsing, the registry, write_all, OVF, docker."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dibpy import outputs
from dibpy.errors import ConfigError, DibpyError, MultiError
from dibpy.outputs import OutputOptions, OutputPlugin
from dibpy.outputs import options as qopts
from dibpy.outputs.ova import NS, Hardware, manifest, ovf_descriptor
from dibpy.outputs.qemu import QemuOutput, vhd_footer_size
from dibpy.outputs.tree import (
    check_docker_archive,
    docker_tag,
    split_tag,
    write_docker_archive,
)
from tests.conftest import REPO

ALL = ("raw", "qcow2", "vhd", "vhdx", "vmdk", "ova", "tar", "tgz", "squashfs", "docker", "vmmgr")


# -- registry -------------------------------------------------------------------------


def test_every_format_is_a_plugin() -> None:
    avail = outputs.available()
    for name in ALL:
        assert name in avail, name
        p = outputs.get(name)
        assert p.name == name and p.extension
    assert {n for n in ALL if outputs.get(n).needs_tree} == {"tar", "tgz", "squashfs", "docker"}


def test_unknown_type_names_the_closest() -> None:
    with pytest.raises(ConfigError) as e:
        outputs.get("qcow")
    assert "qcow" in e.value.message and "qcow2" in str(e.value.hint)


# -- qemu-img options -------------------------------------------------------------------


def test_defaults_and_variables_and_command_line_precedence() -> None:
    assert qopts.resolve("vhd", "", {}) == {"subformat": "dynamic", "force_size": "on"}
    env = {"DIB_VHD_SUBFORMAT": "fixed", "DIB_QCOW2_COMPAT": "0.10"}
    assert qopts.resolve("vhd", "", env)["subformat"] == "fixed"
    assert qopts.resolve("qcow2", "", env) == {"compat": "0.10"}
    # --qemu-img-options wins over the variable
    assert qopts.resolve("qcow2", "compat=1.1", env) == {
        "compat": "1.1",
        "compression_type": "zstd",
    }
    # a plain key goes to each format that knows it; a prefixed key only to its output
    o = "subformat=fixed,vmdk:subformat=streamOptimized,cluster_size=2M"
    assert qopts.resolve("vhd", o, {})["subformat"] == "fixed"
    assert qopts.resolve("vmdk", o, {})["subformat"] == "streamOptimized"
    assert qopts.resolve("qcow2", o, {}) == {"cluster_size": "2M", "compression_type": "zstd"}
    # an OVA's disk is always streamOptimized
    assert qopts.resolve("ova", "subformat=monolithicSparse", {})["subformat"] == "streamOptimized"


def test_qcow2_compression_defaults_to_zstd_unless_old_compat_or_asked() -> None:
    assert qopts.resolve("qcow2", "", {})["compression_type"] == "zstd"
    assert "compression_type" not in qopts.resolve("qcow2", "compat=0.10", {})
    assert qopts.resolve("qcow2", "", {"DIB_QCOW2_COMPRESSION_TYPE": "zlib"}) == {
        "compression_type": "zlib"
    }


def test_qcow2_options_pass_through() -> None:
    o = "compat=1.1,cluster_size=128k,preallocation=metadata,lazy_refcounts=on,"
    o += "compression_type=zstd"
    got = qopts.resolve("qcow2", o, {})
    assert got == {
        "compat": "1.1",
        "cluster_size": "128k",
        "preallocation": "metadata",
        "lazy_refcounts": "on",
        "compression_type": "zstd",
    }
    assert qopts.to_argument(got).startswith("compat=1.1,cluster_size=128k")


@pytest.mark.parametrize(
    ("types", "opts", "env", "needle"),
    [
        (["qcow2"], "compat=2.0", {}, "compat=2.0: must be one of"),
        (["qcow2"], "compression_type=lz4", {}, "compression_type=lz4"),
        (["qcow2"], "cluster_size=big", {}, "not a size"),
        (["qcow2"], "compt=1.1", {}, "did you mean 'compat'"),
        (["vhd"], "subformat=sparse", {}, "subformat=sparse"),
        (["vmdk"], "subformat=monolithicFlat", {}, "monolithicSparse, streamOptimized"),
        (["raw", "tar"], "compat=0.10", {}, "no requested output"),
        (["qcow2"], "vpc:subformat=fixed", {}, "'vpc' is not a qemu-img output"),
        (["qcow2"], "qcow2:subformat=fixed", {}, "'subformat' is not an option of qcow2"),
        (["qcow2"], "", {"DIB_QCOW2_PREALLOCATION": "most"}, "preallocation=most"),
        (["qcow2"], "nokeyvalue", {}, "is not key=value"),
    ],
)
def test_bad_options_are_clear_errors(
    types: list[str], opts: str, env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as e:
        qopts.validate(types, opts, env)
    assert needle in str(e.value)


def test_validate_reports_every_problem_at_once() -> None:
    plugins = [outputs.get(n) for n in ("qcow2", "vhd", "ova", "docker")]
    o = OutputOptions(
        qemu_img_options="compat=9,subformat=weird",
        environ={"DIB_OVA_CPUS": "many"},
        docker_target="Not A Tag",
    )
    with pytest.raises(MultiError) as e:
        outputs.validate(plugins, o)
    text = str(e.value)
    for needle in ("compat=9", "subformat=weird", "DIB_OVA_CPUS=many", "Not A Tag"):
        assert needle in text, text


def test_validate_accepts_good_options() -> None:
    plugins = [outputs.get(n) for n in ALL if n != "vmmgr"]
    outputs.validate(plugins, OutputOptions(qemu_img_options="compat=0.10,vhd:subformat=fixed"))
    # a plain key goes to every format that knows it: here vmdk cannot take "fixed"
    with pytest.raises(MultiError, match="vmdk options: subformat=fixed"):
        outputs.validate(plugins, OutputOptions(qemu_img_options="subformat=fixed"))


@pytest.mark.parametrize(
    ("output", "options", "env", "uncompressed", "needles"),
    [
        # qcow2 is compressed unless -u: any preallocation is refused, naming both
        ("qcow2", "preallocation=metadata", {}, False, ["preallocation=metadata", "compression"]),
        ("qcow2", "", {"DIB_QCOW2_PREALLOCATION": "full"}, False, ["DIB_QCOW2_PREALLOCATION"]),
        ("qcow2", "compat=0.10,lazy_refcounts=on", {}, True, ["compat=0.10", "lazy_refcounts=on"]),
        ("qcow2", "compat=v2", {"DIB_QCOW2_LAZY_REFCOUNTS": "on"}, True, ["lazy_refcounts"]),
        ("qcow2", "compat=0.10,compression_type=zstd", {}, False, ["compression_type=zstd"]),
        ("qcow2", "compat=0.10,refcount_bits=8", {}, True, ["refcount_bits=8"]),
        ("qcow2", "compat=0.10,extended_l2=on", {}, True, ["extended_l2=on"]),
        ("qcow2", "extended_l2=on,cluster_size=4k", {}, True, ["cluster_size=4k", "16k"]),
        ("vmdk", "compat6=on,hwversion=6", {}, False, ["compat6=on", "hwversion=6"]),
        ("ova", "compat6=on,hwversion=4", {}, False, ["compat6=on", "hwversion=4"]),
    ],
)
def test_options_qemu_img_refuses_together_are_refused_naming_both(
    output: str, options: str, env: dict[str, str], uncompressed: bool, needles: list[str]
) -> None:
    plugin = outputs.get(output)
    with pytest.raises(MultiError) as e:
        outputs.validate([plugin], OutputOptions(uncompressed, options, env))
    assert len(e.value.problems) == 1 and "\n" not in e.value.message, e.value.message
    assert "cannot go together" in e.value.message
    for needle in needles:
        assert needle in e.value.message, e.value.message
    assert e.value.hint and "drop" in e.value.hint


def test_a_conflict_names_where_each_option_was_set() -> None:
    env = {"DIB_QCOW2_COMPAT": "0.10"}
    with pytest.raises(ConfigError) as e:
        qopts.resolve("qcow2", "lazy_refcounts=on", env)
    assert "compat=0.10 (from DIB_QCOW2_COMPAT)" in e.value.message
    assert "lazy_refcounts=on (from --qemu-img-options)" in e.value.message


@pytest.mark.parametrize(
    ("output", "options", "uncompressed"),
    [
        ("qcow2", "preallocation=metadata", True),  # -u: nothing to compress
        ("qcow2", "preallocation=off", False),
        ("qcow2", "compat=0.10,compression_type=zlib,refcount_bits=16", False),
        ("qcow2", "compat=1.1,lazy_refcounts=on,extended_l2=on,cluster_size=16k", False),
        ("vmdk", "compat6=on", False),
        ("vmdk", "hwversion=6", False),
        ("vhd", "preallocation=metadata", False),  # not a vhd key: qcow2's own business
    ],
)
def test_options_that_do_go_together_pass(output: str, options: str, uncompressed: bool) -> None:
    plugins = [outputs.get(output)]
    if output == "vhd":
        plugins.append(outputs.get("qcow2"))
        uncompressed = True
    outputs.validate(plugins, OutputOptions(uncompressed, options))


def test_preallocation_no_longer_drops_compression_silently() -> None:
    q = outputs.get("qcow2")
    assert isinstance(q, QemuOutput)
    assert q.compress(OutputOptions()) is True
    assert q.compress(OutputOptions(uncompressed=True)) is False
    # what the write would use, if validation were skipped: still refused, never dropped
    with pytest.raises(ConfigError, match="cannot go together"):
        q.options(OutputOptions(qemu_img_options="preallocation=falloc"))


@pytest.mark.parametrize(
    ("output", "options", "needle"),
    [
        ("qcow2", "cluster_size=3k", "cluster_size=3k: must be a power of two from 512 to 2M"),
        ("qcow2", "cluster_size=4M", "cluster_size=4M: must be a power of two"),
        ("qcow2", "cluster_size=256", "cluster_size=256: must be a power of two"),
        ("vhdx", "block_size=3M", "block_size=3M: must be a power of two from 1M to 256M"),
    ],
)
def test_sizes_qemu_img_refuses_are_refused(output: str, options: str, needle: str) -> None:
    with pytest.raises(MultiError, match=needle):
        outputs.validate([outputs.get(output)], OutputOptions(True, options))


def test_disk_image_create_refuses_a_conflict_before_anything_exists(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env["ELEMENTS_PATH"] = str(REPO / "tests" / "fixtures" / "pipeline-elements")
    env["TMP_DIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    argv = [sys.executable, str(REPO / "bin" / "disk-image-create"), "-n", "-o"]
    argv += [str(tmp_path / "img"), "--qemu-img-options", "preallocation=metadata", "tiny-os"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith("disk-image-create: error: qcow2 options: preallocation=metadata")
    assert "compression" in lines[0] and "Traceback" not in r.stderr
    assert all(line.startswith("  hint:") for line in lines[1:]), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []


# -- write_all ----------------------------------------------------------------------------


class _Slow(OutputPlugin):
    name = "slow"
    extension = "slow"
    running = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self, fail: bool = False, bad: bool = False) -> None:
        self.fail, self.bad = fail, bad

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        with _Slow.lock:
            _Slow.running += 1
            _Slow.peak = max(_Slow.peak, _Slow.running)
        time.sleep(0.3)
        with _Slow.lock:
            _Slow.running -= 1
        if self.fail:
            raise DibpyError(f"cannot write {dest.name}")
        dest.write_bytes(b"" if self.bad else raw.read_bytes())

    def check(self, dest: Path) -> None:
        if dest.stat().st_size == 0:
            raise DibpyError(f"{dest.name} is empty")


def test_write_all_runs_outputs_in_parallel(tmp_path: Path) -> None:
    raw = tmp_path / "in.raw"
    raw.write_bytes(b"x" * 100)
    _Slow.peak = 0
    todo = [(_Slow(), tmp_path / f"out{i}.slow") for i in range(3)]
    kept: list[Path] = []
    written = outputs.write_all(todo, raw, OutputOptions(), keep_old=kept.append, jobs=3)
    assert written == [d for _, d in todo]
    assert _Slow.peak == 3
    assert kept == [] or sorted(kept) == sorted(d for _, d in todo)
    assert all(d.read_bytes() == b"x" * 100 for _, d in todo)
    assert not list(tmp_path.glob(".*partial*"))


def test_write_all_failures_leave_no_partial_and_name_each_output(tmp_path: Path) -> None:
    raw = tmp_path / "in.raw"
    raw.write_bytes(b"x")
    good, failing, bad = tmp_path / "a.slow", tmp_path / "b.slow", tmp_path / "c.slow"
    with pytest.raises(MultiError) as e:
        outputs.write_all(
            [(_Slow(), good), (_Slow(fail=True), failing), (_Slow(bad=True), bad)],
            raw,
            OutputOptions(),
            jobs=3,
        )
    assert (
        "cannot write b.slow" in str(e.value)
        and "c.slow" in str(e.value)
        and "is empty" in str(e.value)
    )
    assert good.exists() and not failing.exists() and not bad.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_write_one_failure_keeps_the_previous_output(tmp_path: Path) -> None:
    raw = tmp_path / "in.raw"
    raw.write_bytes(b"new")
    dest = tmp_path / "x.slow"
    dest.write_bytes(b"old")
    with pytest.raises(DibpyError, match="is empty"):
        outputs.write_all([(_Slow(bad=True), dest)], raw, OutputOptions())
    assert dest.read_bytes() == b"old"


# -- OVA ----------------------------------------------------------------------------------


def test_ovf_descriptor_is_valid_and_describes_the_vm() -> None:
    hw = Hardware(cpus=4, memory_mb=2048, nic="E1000", adapter="lsilogic")
    xml = ovf_descriptor("myvm", "myvm.vmdk", 12345, 10 * 1024**3, hw)
    env = ET.fromstring(xml)
    assert env.tag == f"{{{NS['ovf']}}}Envelope"
    f = env.find("ovf:References/ovf:File", NS)
    assert f is not None
    assert f.get(f"{{{NS['ovf']}}}href") == "myvm.vmdk"
    assert f.get(f"{{{NS['ovf']}}}size") == "12345"
    disk = env.find("ovf:DiskSection/ovf:Disk", NS)
    assert disk is not None and disk.get(f"{{{NS['ovf']}}}capacity") == str(10 * 1024**3)
    items = env.findall("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:Item", NS)
    by_type = {i.findtext("rasd:ResourceType", namespaces=NS): i for i in items}
    assert by_type["3"].findtext("rasd:VirtualQuantity", namespaces=NS) == "4"
    assert by_type["4"].findtext("rasd:VirtualQuantity", namespaces=NS) == "2048"
    assert by_type["6"].findtext("rasd:ResourceSubType", namespaces=NS) == "lsilogic"
    assert by_type["17"].findtext("rasd:HostResource", namespaces=NS) == "ovf:/disk/vmdisk1"
    assert by_type["10"].findtext("rasd:ResourceSubType", namespaces=NS) == "E1000"
    # rasd elements in alphabetical order, as CIM requires
    for item in items:
        tags = [c.tag for c in item]
        assert tags == sorted(tags)


def test_ovf_ide_controller() -> None:
    env = ET.fromstring(ovf_descriptor("v", "v.vmdk", 1, 1024, Hardware(adapter="ide")))
    types = [
        i.findtext("rasd:ResourceType", namespaces=NS) for i in env.iter(f"{{{NS['ovf']}}}Item")
    ]
    assert "5" in types and "6" not in types


def test_ova_hardware_variables() -> None:
    hw = Hardware.from_env(
        {"DIB_OVA_CPUS": "8", "DIB_OVA_MEMORY_MB": "4096", "DIB_OVA_NIC": "E1000e"}
    )
    assert (hw.cpus, hw.memory_mb, hw.nic) == (8, 4096, "E1000e")
    with pytest.raises(ConfigError, match="DIB_OVA_NIC=rtl"):
        Hardware.from_env({"DIB_OVA_NIC": "rtl"})
    with pytest.raises(ConfigError, match="DIB_OVA_MEMORY_MB=0"):
        Hardware.from_env({"DIB_OVA_MEMORY_MB": "0"})


def test_manifest_lines() -> None:
    assert manifest({"a.ovf": "ab", "a.vmdk": "cd"}) == b"SHA256(a.ovf)= ab\nSHA256(a.vmdk)= cd\n"


# -- VHD footer ---------------------------------------------------------------------------


def test_vhd_footer_size(tmp_path: Path) -> None:
    footer = bytearray(512)
    footer[:8] = b"conectix"
    footer[48:56] = (5 * 1024 * 1024).to_bytes(8, "big")
    p = tmp_path / "x.vhd"
    p.write_bytes(b"\0" * 1024 + bytes(footer))
    assert vhd_footer_size(p) == 5 * 1024 * 1024
    p.write_bytes(b"\0" * 2048)
    with pytest.raises(DibpyError, match="no VHD footer"):
        vhd_footer_size(p)


# -- docker -------------------------------------------------------------------------------


def test_docker_tags() -> None:
    assert docker_tag(OutputOptions(image_name="My Image")) == "my-image:latest"
    assert docker_tag(OutputOptions(docker_target="reg.example:5000/team/img:1.0")) == (
        "reg.example:5000/team/img:1.0"
    )
    assert split_tag("reg.example:5000/team/img:1.0") == ("reg.example:5000/team/img", "1.0")
    assert split_tag("img") == ("img", "latest")
    with pytest.raises(ConfigError, match="not a docker image reference"):
        docker_tag(OutputOptions(docker_target="UPPER/Case"))


def _layer(tmp_path: Path) -> Path:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as t:
        for name, data in (("etc/hostname", b"h\n"), ("bin/sh", b"#!")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return layer


def test_docker_archive_has_what_docker_load_reads(tmp_path: Path) -> None:
    layer = _layer(tmp_path)
    dest = tmp_path / "img.docker.tar"
    write_docker_archive(layer, dest, "myimg:7", "x86_64")
    with tarfile.open(dest) as t:
        names = t.getnames()
        manifest_file = t.extractfile("manifest.json")
        assert manifest_file is not None
        m = json.loads(manifest_file.read())
        assert m[0]["RepoTags"] == ["myimg:7"]
        cfg_file = t.extractfile(m[0]["Config"])
        assert cfg_file is not None
        cfg_bytes = cfg_file.read()
        cfg = json.loads(cfg_bytes)
        layer_member = t.extractfile(m[0]["Layers"][0])
        assert layer_member is not None
        digest = hashlib.sha256(layer_member.read()).hexdigest()
        repos_file = t.extractfile("repositories")
        assert repos_file is not None
        repos = json.loads(repos_file.read())
    assert m[0]["Config"] == hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{digest}"]}
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"
    assert f"{digest}/layer.tar" in names and f"{digest}/VERSION" in names
    assert repos == {"myimg": {"7": digest}}
    assert check_docker_archive(dest, ["etc", "bin"])["images"][0]["RepoTags"] == ["myimg:7"]


def _rewrite(src: Path, dest: Path, change: dict[str, bytes | None]) -> None:
    with tarfile.open(src) as s, tarfile.open(dest, "w") as d:
        for m in s.getmembers():
            if m.name in change:
                data = change[m.name]
                if data is None:
                    continue
                m.size = len(data)
                d.addfile(m, io.BytesIO(data))
            else:
                d.addfile(m, s.extractfile(m) if m.isfile() else None)


def test_docker_archive_check_catches_damage(tmp_path: Path) -> None:
    good = tmp_path / "good.tar"
    write_docker_archive(_layer(tmp_path), good, "x:1", "amd64")
    with tarfile.open(good) as t:
        f = t.extractfile("manifest.json")
        assert f is not None
        m = json.loads(f.read())
    bad = tmp_path / "bad.tar"
    _rewrite(good, bad, {"manifest.json": None})
    with pytest.raises(DibpyError, match="lacks manifest.json"):
        check_docker_archive(bad)
    _rewrite(good, bad, {m[0]["Layers"][0]: b"\0" * 1024})
    with pytest.raises(DibpyError, match="does not match"):
        check_docker_archive(bad)
    _rewrite(good, bad, {m[0]["Config"]: b"{not json"})
    with pytest.raises(DibpyError, match="is not JSON"):
        check_docker_archive(bad)
    with pytest.raises(DibpyError, match="lacks sbin"):
        check_docker_archive(good, ["etc", "sbin"])
    (tmp_path / "junk").write_bytes(b"junk" * 100)
    with pytest.raises(DibpyError, match="not a readable tar"):
        check_docker_archive(tmp_path / "junk")
