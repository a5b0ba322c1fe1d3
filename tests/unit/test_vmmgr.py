"""VM-manager templates: metadata from variables and YAML, metainfo.xml as the manager
documents it (checked against our XML schema by xmllint as well), the archive check."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from dibpy.errors import ConfigError, DibpyError
from dibpy.outputs import vmmgr_template as vmmgr

needs_xmllint = pytest.mark.skipif(
    shutil.which("xmllint") is None, reason="xmllint (libxml2-utils) is not installed"
)

#: the Windows template of the manager's documentation, element for element
DOCUMENTED_WINDOWS = [
    ("osname", {}, "Windows-Server-2019"),
    ("limit", {}, None),
    ("limit/elem", {"name": "ipv4"}, "yes"),
    ("limit/elem", {"name": "ipv6"}, "no"),
    ("limit/elem", {"name": "mem"}, "1024"),
    ("limit/elem", {"name": "disk"}, "15000"),
    ("support", {}, None),
    ("support/elem", {}, "VMmgr"),
    ("tags", {}, "windows,windows2019"),
    ("version", {}, "1.0"),
    ("hddimage", {}, "win2019.hddimage"),
    ("rebootcount", {}, "1"),
    ("type", {}, "ostemplate"),
    ("installdrive", {}, "windows.cmd"),
    ("virtiodisk", {}, "yes"),
    ("virtionet", {}, "yes"),
    ("macro", {}, None),
    ("macro/elem", {"name": "($PRODUCTKEY)"}, None),
]


def flatten(xml: bytes) -> list[tuple[str, dict[str, str], str | None]]:
    doc = ET.fromstring(xml)
    assert doc.tag == "doc"
    out: list[tuple[str, dict[str, str], str | None]] = []
    for child in doc:
        text = (child.text or "").strip() or None
        out.append((child.tag, dict(child.attrib), None if len(child) else text))
        for sub in child:
            out.append(
                (f"{child.tag}/{sub.tag}", dict(sub.attrib), (sub.text or "").strip() or None)
            )
    return out


def windows_yaml(tmp_path: Path, extra: str = "") -> Path:
    meta = tmp_path / "win2019.yaml"
    meta.write_text(
        "osname: Windows-Server-2019\n"
        "limits: {ipv4: yes, ipv6: no, mem: 1024, disk: 15000}\n"
        "tags: [windows, windows2019]\n"
        "hddimage: win2019.hddimage\n" + extra
    )
    return meta


def test_schemas_are_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(vmmgr.schema())
    ET.parse(vmmgr.xml_schema_path())


def test_a_windows_template_is_the_documented_one_element_for_element(tmp_path: Path) -> None:
    m = vmmgr.load({"DIB_VMMGR_METADATA": str(windows_yaml(tmp_path))}, "win2019")
    assert m.kind == "windows"  # from its name, as the manager tells the OS
    assert m.hddimage_for("win2019") == "win2019.hddimage"
    xml = vmmgr.metainfo(m, "win2019.hddimage", 20480)
    assert flatten(xml) == DOCUMENTED_WINDOWS
    assert vmmgr.validate_metainfo(xml) == []


def test_a_linux_template() -> None:
    m = vmmgr.load({"DIB_VMMGR_OSNAME": "Debian-12-amd64"})
    assert (m.kind, m.installdrive, m.disk_format) == ("linux", "setup.sh", "raw")
    got = dict(
        (t, x) for t, a, x in flatten(vmmgr.metainfo(m, "Debian-12.hddimage", 2048)) if not a
    )
    assert got["tags"] == "linux" and got["installdrive"] == "setup.sh"
    assert got["hddimage"] == "Debian-12.hddimage"
    assert "macro" not in got
    limits = {a["name"]: x for t, a, x in flatten(vmmgr.metainfo(m, "d", 2048)) if a}
    assert limits == {"ipv4": "yes", "ipv6": "no", "mem": "512", "disk": "2048"}
    script = vmmgr.setup_script(m)
    assert script.startswith(b"#!/bin/sh\n") and b"\r" not in script
    assert b"($PASS)" in script and b"($HOSTNAME)" in script


def test_the_windows_script_is_crlf_with_the_managers_macros_left_verbatim(tmp_path: Path) -> None:
    m = vmmgr.load({"DIB_VMMGR_METADATA": str(windows_yaml(tmp_path))})
    script = vmmgr.setup_script(m)
    assert script.count(b"\n") == script.count(b"\r\n") > 5 and script.endswith(b"\r\n")
    for macro in (b"($PASS)", b"($PRODUCTKEY)", b"($NAMESERVERS)", b"($HOSTNAME)"):
        assert macro in script, macro
    # without the product-key macro the script does not use it
    m = vmmgr.load({"DIB_VMMGR_METADATA": str(windows_yaml(tmp_path, "macros: []\n"))})
    assert b"($PRODUCTKEY)" not in vmmgr.setup_script(m)
    assert "macro" not in [t for t, _, _ in flatten(vmmgr.metainfo(m, "w.hddimage", 10))]


def test_the_users_script_keeps_its_macros_and_gets_the_right_line_endings(
    tmp_path: Path,
) -> None:
    (tmp_path / "first.cmd").write_text("echo ($PASS)\nnet user x ($PASS)\r\n")
    meta = windows_yaml(tmp_path, "setup_script: first.cmd\ninstalldrive: first.cmd\n")
    m = vmmgr.load({"DIB_VMMGR_METADATA": str(meta)})
    assert m.installdrive == "first.cmd"
    assert vmmgr.setup_script(m) == b"echo ($PASS)\r\nnet user x ($PASS)\r\n"
    (tmp_path / "init.sh").write_text("#!/bin/sh\r\necho '($PASS)'\r\n")
    env = {"DIB_VMMGR_OSNAME": "Alma-9", "DIB_VMMGR_SETUP_SCRIPT": str(tmp_path / "init.sh")}
    env["DIB_VMMGR_INSTALLDRIVE"] = "init.sh"
    m = vmmgr.load(env)
    assert m.installdrive == "init.sh"
    assert vmmgr.setup_script(m) == b"#!/bin/sh\necho '($PASS)'\n"


def test_metadata_from_variables() -> None:
    env = {
        "DIB_VMMGR_OSNAME": "Debian-12-amd64",
        "DIB_VMMGR_VERSION": "12.5",
        "DIB_VMMGR_LIMIT_MEM": "1024",
        "DIB_VMMGR_LIMIT_IPV6": "yes",
        "DIB_VMMGR_TAGS": "linux, debian",
        "DIB_VMMGR_SUPPORT": "VMmgr,DCImgr",
        "DIB_VMMGR_VIRTIONET": "no",
        "DIB_VMMGR_MACROS": "ADMIN_EMAIL,($ROOTKEY)",
        "DIB_VMMGR_DISK_FORMAT": "qcow2",
    }
    m = vmmgr.load(env)
    assert m.osname == "Debian-12-amd64" and m.version == "12.5"
    assert m.limits == {"ipv4": True, "ipv6": True, "mem": 1024, "disk": None}
    assert m.tags == ["linux", "debian"] and m.support == ["VMmgr", "DCImgr"]
    assert m.virtionet is False and m.virtiodisk is True
    assert m.macros == ["($ADMIN_EMAIL)", "($ROOTKEY)"]
    assert m.hddimage_for("deb") == "deb.qcow2"


def test_tags_as_one_text_and_old_numeric_limits_are_read(tmp_path: Path) -> None:
    meta = tmp_path / "m.yaml"
    meta.write_text("osname: X\ntags: a,b\nlimits: {ipv4: 1, ipv6: 0}\nmacros: [{name: KEY}]\n")
    m = vmmgr.load({"DIB_VMMGR_METADATA": str(meta)})
    assert m.tags == ["a", "b"] and m.limits["ipv4"] is True and m.limits["ipv6"] is False
    assert m.macros == ["($KEY)"]


def test_osname_defaults_to_the_image_name() -> None:
    assert vmmgr.load({}, "my image").osname == "my-image"


@pytest.mark.parametrize(
    ("yaml_text", "env", "needles"),
    [
        ("osname: 'bad name!'\n", {}, ["(DIB_VMMGR_METADATA): osname:"]),
        ("osname: X\nlimits: {mem: lots}\n", {}, ["limits.mem:"]),
        ("osname: X\nlimits: {ipv4: maybe}\n", {}, ["limits.ipv4: 'maybe' is not yes or no"]),
        ("osname: Windows-11\n", {"DIB_VMMGR_INSTALLDRIVE": "x.sh"}, ["DIB_VMMGR_INSTALLDRIVE: "]),
        ("osname: X\nmacros: [lower]\n", {}, ["macros.0:"]),
        ("osname: X\nmacros: [{name: KEY, description: d}]\n", {}, ["macros.0:"]),
        ("osname: X\ncolour: red\n", {}, ["(top level)", "colour"]),
        ("osname: X\ntags: 'a b'\n", {}, ["tags:"]),
        ("osname: X\ninstalldrive: ../x.sh\n", {}, ["installdrive:"]),
        ("osname: X\nhddimage: a/b\n", {}, ["hddimage:"]),
        ("osname: X\nkind: macos\n", {}, ["kind:"]),
        ("osname: X\nsupport: []\n", {}, ["support:"]),
        ("osname: X\n", {"DIB_VMMGR_VIRTIODISK": "maybe"}, ["DIB_VMMGR_VIRTIODISK=maybe"]),
        ("osname: X\n", {"DIB_VMMGR_DISK_FORMAT": "vmdk"}, ["DIB_VMMGR_DISK_FORMAT: disk_format:"]),
        ("osname: X\n", {"DIB_VMMGR_LIMIT_DISK": "0"}, ["DIB_VMMGR_LIMIT_DISK: limits.disk:"]),
        ("osname: Windows-10\ninstalldrive: setup.sh\n", {}, ["installdrive: setup.sh", ".cmd"]),
        ("osname: X\nhddimage: metainfo.xml\n", {}, ["hddimage: metainfo.xml"]),
        ("osname: X\ninstalldrive: vda\n", {}, ["installdrive: vda is a drive name"]),
    ],
)
def test_every_error_names_its_key(
    tmp_path: Path, yaml_text: str, env: dict[str, str], needles: list[str]
) -> None:
    meta = tmp_path / "meta.yaml"
    meta.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        vmmgr.load({"DIB_VMMGR_METADATA": str(meta), **env})
    for needle in needles:
        assert needle in e.value.message, e.value.message


def test_all_problems_at_once(tmp_path: Path) -> None:
    meta = tmp_path / "meta.yaml"
    meta.write_text("osname: 'bad name!'\nlimits: {mem: lots}\ncolour: red\n")
    with pytest.raises(ConfigError) as e:
        vmmgr.load({"DIB_VMMGR_METADATA": str(meta), "DIB_VMMGR_VIRTIODISK": "maybe"})
    for needle in ("osname", "limits.mem", "colour", "DIB_VMMGR_VIRTIODISK"):
        assert needle in str(e.value), e.value


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    meta = tmp_path / "meta.yaml"
    meta.write_text("osname: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        vmmgr.load({"DIB_VMMGR_METADATA": str(meta)})
    assert "\n" not in e.value.message
    with pytest.raises(ConfigError, match="cannot read"):
        vmmgr.load({"DIB_VMMGR_METADATA": str(tmp_path / "nope.yaml")})
    meta.write_text("osname: x\nsetup_script: missing.sh\n")
    with pytest.raises(ConfigError, match="setup_script: .*missing.sh does not exist"):
        vmmgr.load({"DIB_VMMGR_METADATA": str(meta)})


#: documents that are not the documented metainfo.xml (the first is what dibpy wrote
#: before): each is refused by xmllint against the XSD and by validate_metainfo
OLD_DIBPY = b"""<doc><osname>X</osname><limit name="ipv4">1</limit><limit name="ipv6">0</limit>
<limit name="mem">512</limit><limit name="disk">10</limit><support/><tags><elem>linux</elem></tags>
<hddimage>X.qcow2</hddimage><type>ostemplate</type><installdrive>vda</installdrive>
<virtiodisk>on</virtiodisk><virtionet>on</virtionet>
<macros><macro name="KEY" macro="($KEY)"/></macros></doc>"""


def _documented(**change: str) -> bytes:
    parts = {
        "osname": "<osname>W</osname>",
        "limit": '<limit><elem name="ipv4">yes</elem><elem name="ipv6">no</elem>'
        '<elem name="mem">1024</elem><elem name="disk">15000</elem></limit>',
        "support": "<support><elem>VMmgr</elem></support>",
        "tags": "<tags>windows,windows2019</tags>",
        "hddimage": "<hddimage>w.hddimage</hddimage>",
        "type": "<type>ostemplate</type>",
        "installdrive": "<installdrive>windows.cmd</installdrive>",
        "virtiodisk": "<virtiodisk>yes</virtiodisk>",
        "virtionet": "<virtionet>yes</virtionet>",
        "macro": '<macro><elem name="($PRODUCTKEY)"/></macro>',
    }
    parts.update(change)
    return ("<doc>" + "".join(parts.values()) + "</doc>").encode()


BAD_DOCUMENTS = [
    OLD_DIBPY,
    _documented(virtiodisk="<virtiodisk>on</virtiodisk>"),
    _documented(tags="<tags><elem>windows</elem></tags>"),
    _documented(
        limit='<limit><elem name="ipv4">yes</elem><elem name="ipv6">no</elem>'
        '<elem name="mem">1024</elem></limit>'
    ),
    _documented(
        limit='<limit><elem name="ipv4">yes</elem><elem name="ipv4">no</elem>'
        '<elem name="mem">1024</elem><elem name="disk">1</elem></limit>'
    ),
    _documented(macro='<macro><elem name="PRODUCTKEY"/></macro>'),
    _documented(installdrive="<installdrive>C:\\windows.cmd</installdrive>"),
    _documented(type="<type>other</type>"),
    _documented(osname=""),
    _documented(extra="<colour>red</colour>"),
    _documented(support="<support/>"),
]


def test_validate_metainfo_refuses_what_is_not_documented() -> None:
    assert vmmgr.validate_metainfo(_documented()) == []
    for doc in BAD_DOCUMENTS:
        assert vmmgr.validate_metainfo(doc), doc
    problems = vmmgr.validate_metainfo(OLD_DIBPY)
    text = "; ".join(problems)
    for needle in ("<limit>: given 4 times", "<macros>", "<virtiodisk>: 'on'", "<tags>"):
        assert needle in text, text


def xmllint(doc: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "metainfo.xml"
    f.write_bytes(doc)
    return subprocess.run(
        ["xmllint", "--noout", "--schema", str(vmmgr.xml_schema_path()), str(f)],
        capture_output=True,
        text=True,
    )


@needs_xmllint
def test_xmllint_agrees_with_the_schema(tmp_path: Path) -> None:
    """Our XSD, by an independent validator: the generated documents pass, the bad ones
    fail in xmllint too (so the schema and validate_metainfo say the same)."""
    win = vmmgr.load({"DIB_VMMGR_METADATA": str(windows_yaml(tmp_path))})
    lin = vmmgr.load({"DIB_VMMGR_OSNAME": "Debian-12"})
    for doc in (vmmgr.metainfo(win, "w.hddimage", 1), vmmgr.metainfo(lin, "d.qcow2", 1)):
        r = xmllint(doc, tmp_path)
        assert r.returncode == 0, r.stderr
    r = xmllint(_documented(), tmp_path)
    assert r.returncode == 0, r.stderr
    for doc in BAD_DOCUMENTS:
        r = xmllint(doc, tmp_path)
        assert r.returncode != 0, doc


def _archive(tmp_path: Path, files: dict[str, bytes]) -> Path:
    p = tmp_path / "t.vmmgr.tar.gz"
    with tarfile.open(p, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return p


def test_archive_write_and_check(tmp_path: Path) -> None:
    m = vmmgr.load({"DIB_VMMGR_METADATA": str(windows_yaml(tmp_path))})
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(510) + b"\x55\xaa" + bytes(4096))
    dest = tmp_path / "win2019.vmmgr.tar.gz"
    vmmgr.write_archive(dest, m, disk, "win2019.hddimage", 3 * 1024 * 1024 + 1)
    summary = vmmgr.check_archive(dest)
    assert summary["files"] == ["metainfo.xml", "win2019.hddimage", "windows.cmd"]
    with tarfile.open(dest) as t:
        info = t.extractfile("metainfo.xml").read()  # type: ignore[union-attr]
        assert t.extractfile("win2019.hddimage").read() == disk.read_bytes()  # type: ignore[union-attr]
    assert flatten(info) == DOCUMENTED_WINDOWS


def test_repository_metadata_json(tmp_path: Path) -> None:
    m = vmmgr.load({"DIB_VMMGR_OSNAME": "T-1"})
    dest = tmp_path / "T-1.vmmgr.tar.gz"
    dest.write_bytes(b"x" * 100)
    entry = vmmgr.metadata_entry(dest, m, "T-1.hddimage")
    assert entry["name"] == "T-1" and entry["file_name"] == dest.name
    assert entry["image_name"] == "T-1.hddimage" and entry["archive_size_mib"] == 1
    repo = tmp_path / "metadata.json"
    vmmgr.add_to_repository(repo, entry)
    vmmgr.add_to_repository(repo, {**entry, "version": "2"})
    vmmgr.add_to_repository(repo, {**entry, "name": "A-0"})
    doc = json.loads(repo.read_text())
    assert doc["type"] == "os"
    assert [(t["name"], t["version"]) for t in doc["os"]] == [("A-0", "1.0"), ("T-1", "2")]
    repo.write_text('{"templates": []}')
    with pytest.raises(DibpyError, match='no "os" list') as e:
        vmmgr.add_to_repository(repo, entry)
    assert e.value.hint and '"templates"' in e.value.hint


def test_archive_check_catches_problems(tmp_path: Path) -> None:
    win = vmmgr.load({"DIB_VMMGR_METADATA": str(windows_yaml(tmp_path))})
    info = vmmgr.metainfo(win, "w.hddimage", 10)
    good = {"metainfo.xml": info, "windows.cmd": b"echo hi\r\n", "w.hddimage": b"\0" * 10}
    vmmgr.check_archive(_archive(tmp_path, good))
    lin = vmmgr.load({"DIB_VMMGR_OSNAME": "L"})
    linfo = vmmgr.metainfo(lin, "l.qcow2", 10)
    lgood = {"metainfo.xml": linfo, "setup.sh": b"echo hi\n", "l.qcow2": b"QFI\xfb" + bytes(9)}
    vmmgr.check_archive(_archive(tmp_path, lgood))
    cases = [
        ({**good, "windows.cmd": b"echo hi\n"}, "CR LF"),
        ({**lgood, "setup.sh": b"echo hi\r\n"}, "needs LF line endings"),
        ({**good, "metainfo.xml": b"<doc><osname>"}, "not well-formed"),
        ({**good, "metainfo.xml": OLD_DIBPY}, "<limit>: given 4 times"),
        ({k: v for k, v in good.items() if k != "w.hddimage"}, "must hold exactly"),
        ({k: v for k, v in good.items() if k != "windows.cmd"}, "must hold exactly"),
        ({**good, "extra.txt": b"x"}, "must hold exactly"),
        ({**lgood, "l.qcow2": b"NOPE" + bytes(10)}, "not a qcow2 image"),
        ({**good, "w.hddimage": b""}, "is empty"),
    ]
    for files, needle in cases:
        with pytest.raises(DibpyError, match=needle):
            vmmgr.check_archive(_archive(tmp_path, files))
    (tmp_path / "plain.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(DibpyError, match="not a readable tar"):
        vmmgr.check_archive(tmp_path / "plain.tar.gz")


# -- the vmmgr-windows element: C:\vmmgr\ on a Windows image ---------------------------

VMMGR_WINDOWS_HOOK = (
    Path(__file__).resolve().parents[2] / "elements/vmmgr-windows/extra-data.d/50-vmmgr-windows"
)


def run_hook(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(VMMGR_WINDOWS_HOOK)],
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", **env},
        capture_output=True,
        text=True,
    )


def test_vmmgr_windows_puts_crlf_scripts_and_dd_exe_in_c_vmmgr(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    dd = tmp_path / "dd.exe"
    dd.write_bytes(b"MZ\x90\x00" + bytes(100))
    r = run_hook({"TARGET_ROOT": str(root), "DIB_VMMGR_DD_EXE": str(dd)})
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (root / "vmmgr").iterdir())
    assert names == ["dd.exe", "ddwrap.cmd", "firstrun.cmd", "firstrun.ps1"]
    assert (root / "vmmgr/dd.exe").read_bytes() == dd.read_bytes()
    for name in ("ddwrap.cmd", "firstrun.cmd", "firstrun.ps1"):
        data = (root / "vmmgr" / name).read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") > 1, name
        assert b"\r\r" not in data
    assert b"C:\\vmmgr\\firstrun.ps1" in (root / "vmmgr/firstrun.cmd").read_bytes()


@pytest.mark.parametrize(
    ("dd", "needle"),
    [
        (None, "DIB_VMMGR_DD_EXE is not set"),
        ("missing.exe", "is not a file"),
        ("text.exe", "not a Windows executable"),
    ],
)
def test_vmmgr_windows_without_a_dd_exe_says_so_in_one_line(
    tmp_path: Path, dd: str | None, needle: str
) -> None:
    (tmp_path / "text.exe").write_text("#!/bin/sh\n")
    env = {"TARGET_ROOT": str(tmp_path)}
    if dd:
        env["DIB_VMMGR_DD_EXE"] = str(tmp_path / dd)
    r = run_hook(env)
    assert r.returncode == 1
    assert r.stderr.startswith("vmmgr-windows: DIB_VMMGR_DD_EXE") and needle in r.stderr
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "vmmgr").exists()
