"""VM-manager templates: metadata from variables and YAML, metainfo.xml, the archive check."""

from __future__ import annotations

import io
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from dibpy import vmmgr
from dibpy.errors import ConfigError, DibpyError


def test_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(vmmgr.schema())


def test_metadata_from_variables() -> None:
    env = {
        "DIB_VMMGR_OSNAME": "Debian-12-amd64",
        "DIB_VMMGR_VERSION": "12.5",
        "DIB_VMMGR_LIMIT_MEM": "1024",
        "DIB_VMMGR_LIMIT_IPV6": "1",
        "DIB_VMMGR_TAGS": "linux, debian",
        "DIB_VMMGR_SUPPORT": "ipv6,passwd",
        "DIB_VMMGR_VIRTIONET": "off",
        "DIB_VMMGR_MACROS": "PRODUCTKEY,ADMIN_EMAIL",
    }
    m = vmmgr.load(env)
    assert m.osname == "Debian-12-amd64" and m.version == "12.5"
    assert m.limits == {"ipv4": 1, "ipv6": 1, "mem": 1024}
    assert m.tags == ["linux", "debian"] and m.support == ["ipv6", "passwd"]
    assert m.virtionet is False and m.virtiodisk is True
    assert [x["name"] for x in m.macros] == ["PRODUCTKEY", "ADMIN_EMAIL"]


def test_metadata_from_yaml_with_variables_winning(tmp_path: Path) -> None:
    script = tmp_path / "init.sh"
    script.write_text("echo ($PRODUCTKEY)\n")
    meta = tmp_path / "meta.yaml"
    meta.write_text(
        "osname: Win-Like\nversion: '2'\nlimits: {mem: 2048, disk: 20000}\n"
        "macros:\n  - {name: PRODUCTKEY, description: the licence key}\n"
        "setup_script: init.sh\nrebootcount: 3\n"
    )
    m = vmmgr.load({"DIB_VMMGR_METADATA": str(meta), "DIB_VMMGR_REBOOTCOUNT": "2"})
    assert m.osname == "Win-Like" and m.rebootcount == 2
    assert m.limits == {"ipv4": 1, "ipv6": 0, "mem": 2048, "disk": 20000}
    assert m.setup_script == script
    assert vmmgr.setup_script(m) == b"echo ($PRODUCTKEY)\r\n"


def test_osname_defaults_to_the_image_name() -> None:
    assert vmmgr.load({}, "my image").osname == "my-image"


def test_bad_metadata_names_every_problem_with_its_path(tmp_path: Path) -> None:
    meta = tmp_path / "meta.yaml"
    meta.write_text(
        "osname: 'bad name!'\nlimits: {mem: lots}\nmacros: [{name: lower}]\ncolour: red\n"
    )
    with pytest.raises(ConfigError) as e:
        vmmgr.load({"DIB_VMMGR_METADATA": str(meta), "DIB_VMMGR_VIRTIODISK": "maybe"})
    text = str(e.value)
    assert str(meta) in text
    for needle in ("osname", "limits.mem", "macros.0.name", "colour", "DIB_VMMGR_VIRTIODISK"):
        assert needle in text, text


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    meta = tmp_path / "meta.yaml"
    meta.write_text("osname: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        vmmgr.load({"DIB_VMMGR_METADATA": str(meta)})
    with pytest.raises(ConfigError, match="cannot read"):
        vmmgr.load({"DIB_VMMGR_METADATA": str(tmp_path / "nope.yaml")})
    meta.write_text("osname: x\nsetup_script: missing.sh\n")
    with pytest.raises(ConfigError, match="missing.sh does not exist"):
        vmmgr.load({"DIB_VMMGR_METADATA": str(meta)})


def test_metainfo_xml() -> None:
    m = vmmgr.load(
        {
            "DIB_VMMGR_OSNAME": "Debian-12",
            "DIB_VMMGR_TAGS": "linux",
            "DIB_VMMGR_MACROS": "PRODUCTKEY",
        }
    )
    doc = ET.fromstring(vmmgr.metainfo(m, "Debian-12.qcow2", 2048))
    assert doc.findtext("osname") == "Debian-12"
    assert doc.findtext("type") == "ostemplate"
    assert doc.findtext("hddimage") == "Debian-12.qcow2"
    assert {e.get("name"): e.text for e in doc.iterfind("limit")} == {
        "ipv4": "1",
        "ipv6": "0",
        "mem": "512",
        "disk": "2048",
    }
    assert doc.findtext("virtiodisk") == "on" and doc.findtext("virtionet") == "on"
    assert doc.findtext("installdrive") == "vda" and doc.findtext("rebootcount") == "1"
    assert [e.text for e in doc.iterfind("tags/elem")] == ["linux"]
    macro = doc.find("macros/macro")
    assert macro is not None and macro.get("macro") == "($PRODUCTKEY)"


def test_crlf() -> None:
    assert vmmgr.crlf("a\nb\r\nc") == b"a\r\nb\r\nc\r\n"
    script = vmmgr.setup_script(vmmgr.load({"DIB_VMMGR_OSNAME": "x"}))
    assert script.count(b"\n") == script.count(b"\r\n") > 3
    # every command ends in a comment so that the CR is harmless to a shell
    for line in script.decode().splitlines()[1:]:
        assert line.rstrip("\r").endswith("#"), line


def _archive(tmp_path: Path, files: dict[str, bytes]) -> Path:
    p = tmp_path / "t.vmmgr.tar.gz"
    with tarfile.open(p, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return p


def test_archive_write_and_check(tmp_path: Path) -> None:
    m = vmmgr.load({"DIB_VMMGR_OSNAME": "T-1"})
    disk = tmp_path / "T-1.qcow2"
    disk.write_bytes(b"QFI\xfb" + bytes(1000))
    dest = tmp_path / "T-1.vmmgr.tar.gz"
    vmmgr.write_archive(dest, m, disk, "T-1.qcow2", 3 * 1024 * 1024 + 1)
    summary = vmmgr.check_archive(dest)
    assert summary["files"] == ["T-1.qcow2", "metainfo.xml", "setup.sh"]
    entry = vmmgr.metadata_entry(dest, m, "T-1.qcow2")
    assert entry["name"] == "T-1" and entry["size"] == dest.stat().st_size
    repo = tmp_path / "metadata.json"
    vmmgr.add_to_repository(repo, entry)
    vmmgr.add_to_repository(repo, {**entry, "version": "2"})
    vmmgr.add_to_repository(repo, {**entry, "name": "A-0"})
    doc = json.loads(repo.read_text())
    assert [(t["name"], t["version"]) for t in doc["templates"]] == [("A-0", "1.0"), ("T-1", "2")]


def test_archive_check_catches_problems(tmp_path: Path) -> None:
    m = vmmgr.load({"DIB_VMMGR_OSNAME": "T"})
    info = vmmgr.metainfo(m, "T.qcow2", 10)
    disk = b"QFI\xfb" + bytes(10)
    crlf = b"echo hi\r\n"
    good = {"metainfo.xml": info, "setup.sh": crlf, "T.qcow2": disk}
    vmmgr.check_archive(_archive(tmp_path, good))
    cases = [
        ({**good, "setup.sh": b"echo hi\n"}, "CR LF"),
        ({**good, "metainfo.xml": b"<doc><osname>"}, "not valid XML"),
        ({k: v for k, v in good.items() if k != "T.qcow2"}, "must hold exactly"),
        ({**good, "extra.txt": b"x"}, "must hold exactly"),
        ({**good, "T.qcow2": b"NOPE" + bytes(10)}, "not a qcow2 image"),
        ({**good, "metainfo.xml": info.replace(b"ostemplate", b"other")}, "not ostemplate"),
    ]
    for files, needle in cases:
        with pytest.raises(DibpyError, match=needle):
            vmmgr.check_archive(_archive(tmp_path, files))
    (tmp_path / "plain.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(DibpyError, match="not a readable tar"):
        vmmgr.check_archive(tmp_path / "plain.tar.gz")
