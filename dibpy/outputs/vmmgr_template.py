"""VM-manager OS templates, in the format the manager documents: metainfo.xml, the
initial setup script and the disk image, in one ``.tar.gz``; and the template's entry for
the repository's ``metadata.json``.

``metainfo.xml`` (checked by :func:`validate_metainfo` and, in the tests, by xmllint
against ``dibpy/schemas/vmmgr-metainfo.xsd``)::

    <doc>
      <osname>Windows-Server-2019</osname>
      <limit><elem name="ipv4">yes</elem><elem name="ipv6">no</elem>
             <elem name="mem">1024</elem><elem name="disk">15000</elem></limit>
      <support><elem>VMmgr</elem></support>
      <tags>windows,windows2019</tags>
      <version>1.0</version>
      <hddimage>win2019.hddimage</hddimage>
      <rebootcount>1</rebootcount>
      <type>ostemplate</type>
      <installdrive>windows.cmd</installdrive>
      <virtiodisk>yes</virtiodisk>
      <virtionet>yes</virtionet>
      <macro><elem name="($PRODUCTKEY)"/></macro>
    </doc>

``installdrive`` is the setup script's file name.  Two kinds of template: ``windows``
(a ``.cmd`` script with CR LF line endings) and ``linux`` (a shell script, LF); the kind
is the user's, else ``windows`` when the name says so (the manager itself tells the OS
by a ``windows`` in the template's name).  The manager's macros (``($PASS)``,
``($PRODUCTKEY)``, ...) are left in the script for the manager to replace.  The disk image
is raw unless ``disk_format: qcow2``.

The metadata comes from a YAML file (``DIB_VMMGR_METADATA``) and ``DIB_VMMGR_*``
variables (a variable wins over the file), validated together against
``dibpy/schemas/vmmgr.json``; every problem names its key.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dibpy.errors import ConfigError, DibpyError, MultiError
from dibpy.outputs.base import open_tar

METAINFO = "metainfo.xml"
DISK_MAGIC = {"qcow2": b"QFI\xfb"}
KINDS = ("linux", "windows")
WINDOWS_SCRIPT_SUFFIXES = (".cmd", ".bat")

DEFAULT_LINUX_SCRIPT = """\
#!/bin/sh
# Initial setup of a VM made from this template: the VM manager replaces the ($NAME)
# macros before it runs this script.
set -eu
hostname '($HOSTNAME)'
echo '($HOSTNAME)' > /etc/hostname
echo 'root:($PASS)' | chpasswd
if command -v cloud-init >/dev/null 2>&1; then cloud-init clean || true; fi
rm -f /etc/machine-id /var/lib/dbus/machine-id
systemd-machine-id-setup >/dev/null 2>&1 || true
"""

#: ``{productkey}`` is the product-key line when the template has that macro
DEFAULT_WINDOWS_SCRIPT = "\n".join(
    [
        "@echo off",
        "rem Initial setup of a VM made from this template: the VM manager replaces the",
        "rem ($NAME) macros before the VM runs this script (C:\\vmmgr\\firstrun.cmd reads it",
        "rem from the manager's setup disk).",
        'net user Administrator "($PASS)"',
        "set DNS=($NAMESERVERS)",
        'powershell.exe -NoProfile -Command "Get-NetAdapter | Set-DnsClientServerAddress'
        " -ServerAddresses ($env:DNS -split '[ ,;]+')\"",
        '{productkey}powershell.exe -NoProfile -Command "Rename-Computer'
        " -NewName '($HOSTNAME)' -Force\"",
        "shutdown /r /t 5",
        "",
    ]
)
PRODUCTKEY_LINE = "cscript //B //NoLogo %SystemRoot%\\System32\\slmgr.vbs /ipk ($PRODUCTKEY)\n"

#: kind -> defaults that differ between the two kinds of template
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "linux": {"installdrive": "setup.sh", "tags": ["linux"], "macros": [], "mem": 512},
    "windows": {
        "installdrive": "windows.cmd",
        "tags": ["windows"],
        "macros": ["($PRODUCTKEY)"],
        "mem": 1024,
    },
}

DEFAULTS: dict[str, Any] = {
    "version": "1.0",
    "support": ["VMmgr"],
    "rebootcount": 1,
    "virtiodisk": True,
    "virtionet": True,
    "disk_format": "raw",
}

#: variable -> (key path, kind)
VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "DIB_VMMGR_OSNAME": (("osname",), "str"),
    "DIB_VMMGR_KIND": (("kind",), "str"),
    "DIB_VMMGR_VERSION": (("version",), "str"),
    "DIB_VMMGR_LIMIT_IPV4": (("limits", "ipv4"), "bool"),
    "DIB_VMMGR_LIMIT_IPV6": (("limits", "ipv6"), "bool"),
    "DIB_VMMGR_LIMIT_MEM": (("limits", "mem"), "int"),
    "DIB_VMMGR_LIMIT_DISK": (("limits", "disk"), "int"),
    "DIB_VMMGR_SUPPORT": (("support",), "list"),
    "DIB_VMMGR_TAGS": (("tags",), "list"),
    "DIB_VMMGR_REBOOTCOUNT": (("rebootcount",), "int"),
    "DIB_VMMGR_INSTALLDRIVE": (("installdrive",), "str"),
    "DIB_VMMGR_VIRTIODISK": (("virtiodisk",), "bool"),
    "DIB_VMMGR_VIRTIONET": (("virtionet",), "bool"),
    "DIB_VMMGR_MACROS": (("macros",), "list"),
    "DIB_VMMGR_DISK_FORMAT": (("disk_format",), "str"),
    "DIB_VMMGR_HDDIMAGE": (("hddimage",), "str"),
    "DIB_VMMGR_SETUP_SCRIPT": (("setup_script",), "str"),
    "DIB_VMMGR_REPOSITORY": (("repository",), "str"),
}
#: key path -> the variable that sets it, to name both in a problem
_VARIABLE_OF = {keys: var for var, (keys, _) in VARIABLES.items()}


@dataclass(frozen=True)
class Metadata:
    osname: str
    kind: str
    version: str
    #: ipv4, ipv6: bool; mem, disk: MiB (disk None: the image's size)
    limits: dict[str, Any]
    support: list[str]
    tags: list[str]
    rebootcount: int
    #: the initial setup script's file name (metainfo's ``installdrive``)
    installdrive: str
    virtiodisk: bool
    virtionet: bool
    #: as the manager writes them: ``($PRODUCTKEY)``
    macros: list[str]
    disk_format: str
    #: the disk image's file name in the template; None: ``NAME.hddimage`` (raw) or
    #: ``NAME.qcow2``
    hddimage: str | None = None
    setup_script: Path | None = None
    repository: Path | None = None

    def hddimage_for(self, name: str) -> str:
        if self.hddimage:
            return self.hddimage
        return f"{name}.{'qcow2' if self.disk_format == 'qcow2' else 'hddimage'}"


def schema() -> dict[str, Any]:
    text = resources.files("dibpy").joinpath("schemas/vmmgr.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def xml_schema_path() -> Path:
    """The XML schema of metainfo.xml (for xmllint; dibpy itself checks in Python)."""
    return Path(str(resources.files("dibpy").joinpath("schemas/vmmgr-metainfo.xsd")))


#: what older dibpy took for installdrive (a drive): vda, sdb, hda, xvda
_DRIVE_NAME = re.compile(r"^(s|v|h|xv)d[a-z]{1,2}[0-9]*$")
_TRUE = ("1", "on", "yes", "true")
_FALSE = ("0", "off", "no", "false")


def _convert(var: str, value: str, kind: str) -> Any:
    if kind == "int":
        if not re.match(r"^-?[0-9]+$", value.strip()):
            raise ConfigError(f"{var}={value}: not an integer")
        return int(value)
    if kind == "bool":
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise ConfigError(f"{var}={value}: not yes/no")
    if kind == "list":
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _yes(value: Any) -> bool:
    return value is True or str(value).lower() in _TRUE


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _macro(m: Any) -> str:
    name = m["name"] if isinstance(m, dict) else str(m)
    return name if name.startswith("($") else "($" + name + ")"


def load(environ: Mapping[str, str], image_name: str = "") -> Metadata:
    """The template metadata from DIB_VMMGR_METADATA and DIB_VMMGR_* (every error at once,
    each naming its key, and the variable or file it came from)."""
    problems: list[str] = []
    data: dict[str, Any] = {}
    origin = "DIB_VMMGR_* variables"
    base_dir = Path.cwd()
    meta_file = environ.get("DIB_VMMGR_METADATA")
    if meta_file:
        p = Path(meta_file)
        origin = f"{p} (DIB_VMMGR_METADATA)"
        base_dir = p.resolve().parent
        try:
            loaded = yaml.safe_load(p.read_text())
        except OSError as e:
            raise ConfigError(f"DIB_VMMGR_METADATA: cannot read {p}: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(
                f"DIB_VMMGR_METADATA: {p} is not valid YAML{where}: "
                f"{getattr(e, 'problem', None) or e}"
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{origin}: the top level must be a mapping")
        data = loaded
    from_variable: set[tuple[str, ...]] = set()
    for var, (keys, kind) in VARIABLES.items():
        if var not in environ or environ[var] == "":
            continue
        try:
            value = _convert(var, environ[var], kind)
        except ConfigError as e:
            problems.append(e.message)
            continue
        target = data
        for k in keys[:-1]:
            if not isinstance(target.get(k), dict):
                target[k] = {}
            target = target[k]
        target[keys[-1]] = value
        from_variable.add(keys)
    if "osname" not in data and image_name:
        data["osname"] = re.sub(r"[^A-Za-z0-9._+-]+", "-", image_name).strip("-") or "image"
    validator = jsonschema.Draft202012Validator(schema())
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        path = tuple(str(p) for p in err.absolute_path)
        where = origin
        for n in range(len(path), 0, -1):
            if path[:n] in from_variable:
                where = _VARIABLE_OF[path[:n]]
                break
        problems.append(f"{where}: {_where(err.absolute_path)}: {_message(err)}")
    if problems:
        raise MultiError(problems, hint="doc/outputs.md describes the vmmgr metadata")
    osname = str(data["osname"])
    kind = str(data.get("kind") or ("windows" if "windows" in osname.lower() else "linux"))
    per_kind = KIND_DEFAULTS[kind]
    merged = {**DEFAULTS, "installdrive": per_kind["installdrive"], **data}
    limits_in = data.get("limits") or {}
    limits = {
        "ipv4": _yes(limits_in.get("ipv4", True)),
        "ipv6": _yes(limits_in.get("ipv6", False)),
        "mem": int(limits_in.get("mem", per_kind["mem"])),
        "disk": limits_in.get("disk"),
    }
    tags = data.get("tags", per_kind["tags"])
    if isinstance(tags, str):
        tags = [t for t in tags.split(",") if t]
    macros = [_macro(m) for m in data.get("macros", per_kind["macros"])]
    installdrive = str(merged["installdrive"])

    def source(key: str) -> str:
        return _VARIABLE_OF[(key,)] if (key,) in from_variable else origin

    if _DRIVE_NAME.match(installdrive):
        raise ConfigError(
            f"{source('installdrive')}: installdrive: {installdrive} is a drive name, but "
            "installdrive is the initial setup script's file name",
            hint=f"e.g. installdrive: {per_kind['installdrive']} (older dibpy took a drive name)",
        )
    if kind == "windows" and not installdrive.lower().endswith(WINDOWS_SCRIPT_SUFFIXES):
        raise ConfigError(
            f"{source('installdrive')}: installdrive: {installdrive}: a Windows template's "
            "setup script is a .cmd or .bat file",
            hint="e.g. installdrive: windows.cmd (or kind: linux for a shell script)",
        )
    if merged.get("hddimage") in (METAINFO, installdrive):
        raise ConfigError(
            f"{source('hddimage')}: hddimage: {merged['hddimage']} is another file's name"
        )
    script = merged.get("setup_script")
    script_path = None
    if script:
        script_path = Path(script) if Path(script).is_absolute() else base_dir / script
        if not script_path.is_file():
            raise ConfigError(
                f"{source('setup_script')}: setup_script: {script_path} does not exist"
            )
    repo = merged.get("repository")
    return Metadata(
        osname=osname,
        kind=kind,
        version=str(merged["version"]),
        limits=limits,
        support=list(merged["support"]),
        tags=list(tags),
        rebootcount=int(merged["rebootcount"]),
        installdrive=installdrive,
        virtiodisk=_yes(merged["virtiodisk"]),
        virtionet=_yes(merged["virtionet"]),
        macros=list(dict.fromkeys(macros)),
        disk_format=str(merged["disk_format"]),
        hddimage=merged.get("hddimage"),
        setup_script=script_path,
        repository=Path(repo) if repo else None,
    )


def _message(err: jsonschema.ValidationError) -> str:
    """jsonschema's message, shortened where it would dump a whole schema."""
    if err.validator == "oneOf":
        want = err.schema.get("description") if isinstance(err.schema, dict) else None
        return f"{err.instance!r} is not {want or 'valid here'} (see dibpy/schemas/vmmgr.json)"
    return err.message


def crlf(text: str) -> bytes:
    """``text`` with every line ending CR LF (and a final one)."""
    return "".join(line + "\r\n" for line in _lines(text)).encode()


def lf(text: str) -> bytes:
    """``text`` with every line ending LF (and a final one): what a shell reads."""
    return "".join(line + "\n" for line in _lines(text)).encode()


def _lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def default_script(meta: Metadata) -> str:
    if meta.kind == "windows":
        key = PRODUCTKEY_LINE if "($PRODUCTKEY)" in meta.macros else ""
        return DEFAULT_WINDOWS_SCRIPT.format(productkey=key)
    return DEFAULT_LINUX_SCRIPT


def setup_script(meta: Metadata) -> bytes:
    """The initial setup script: the user's (or ours), its macros untouched, with the line
    endings of its kind (CR LF for Windows, LF for a shell)."""
    text = meta.setup_script.read_text() if meta.setup_script else default_script(meta)
    return crlf(text) if meta.kind == "windows" else lf(text)


def _yesno(flag: bool) -> str:
    return "yes" if flag else "no"


def metainfo(meta: Metadata, hddimage: str, disk_mib: int) -> bytes:
    """The template's ``metainfo.xml``, element for element as the manager documents it."""
    doc = ET.Element("doc")
    ET.SubElement(doc, "osname").text = meta.osname
    limit = ET.SubElement(doc, "limit")
    limits = meta.limits
    values = {
        "ipv4": _yesno(bool(limits["ipv4"])),
        "ipv6": _yesno(bool(limits["ipv6"])),
        "mem": str(limits["mem"]),
        "disk": str(limits.get("disk") or disk_mib),
    }
    for name, value in values.items():
        ET.SubElement(limit, "elem", {"name": name}).text = value
    support = ET.SubElement(doc, "support")
    for s in meta.support:
        ET.SubElement(support, "elem").text = s
    ET.SubElement(doc, "tags").text = ",".join(meta.tags)
    ET.SubElement(doc, "version").text = meta.version
    ET.SubElement(doc, "hddimage").text = hddimage
    ET.SubElement(doc, "rebootcount").text = str(meta.rebootcount)
    ET.SubElement(doc, "type").text = "ostemplate"
    ET.SubElement(doc, "installdrive").text = meta.installdrive
    ET.SubElement(doc, "virtiodisk").text = _yesno(meta.virtiodisk)
    ET.SubElement(doc, "virtionet").text = _yesno(meta.virtionet)
    if meta.macros:
        macro = ET.SubElement(doc, "macro")
        for m in meta.macros:
            ET.SubElement(macro, "elem", {"name": m})
    ET.indent(doc)
    return bytes(ET.tostring(doc, encoding="utf-8", xml_declaration=True)) + b"\n"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")
_TAGS = re.compile(r"^([A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*)?$")
_MACRO = re.compile(r"^\(\$[A-Z][A-Z0-9_]*\)$")
#: element -> (required, check of its text or None for a structured one)
_TEXT_ELEMENTS: dict[str, tuple[bool, re.Pattern[str]]] = {
    "osname": (True, _NAME),
    "tags": (True, _TAGS),
    "version": (False, re.compile(r"^.+$")),
    "hddimage": (True, _NAME),
    "rebootcount": (False, re.compile(r"^[0-9]+$")),
    "type": (True, re.compile(r"^ostemplate$")),
    "installdrive": (True, _NAME),
    "virtiodisk": (True, re.compile(r"^(yes|no)$")),
    "virtionet": (True, re.compile(r"^(yes|no)$")),
}
_LIMITS = {
    "ipv4": re.compile(r"^(yes|no)$"),
    "ipv6": re.compile(r"^(yes|no)$"),
    "mem": re.compile(r"^[1-9][0-9]*$"),
    "disk": re.compile(r"^[1-9][0-9]*$"),
}


def validate_metainfo(data: bytes) -> list[str]:
    """Every way ``data`` is not a metainfo.xml as documented (the rules of
    ``dibpy/schemas/vmmgr-metainfo.xsd``, and the per-limit types XML Schema 1.0 cannot
    say), each naming its element."""
    try:
        doc = ET.fromstring(data)
    except ET.ParseError as e:
        return [f"not well-formed XML: {e}"]
    if doc.tag != "doc":
        return [f"the root element is <{doc.tag}>, not <doc>"]
    problems: list[str] = []
    known = {*_TEXT_ELEMENTS, "limit", "support", "macro"}
    seen: dict[str, int] = {}
    for child in doc:
        seen[child.tag] = seen.get(child.tag, 0) + 1
        if child.tag not in known:
            problems.append(f"<{child.tag}>: not an element of metainfo.xml")
    problems += [f"<{t}>: given {n} times" for t, n in seen.items() if n > 1 and t in known]
    for tag, (required, pattern) in _TEXT_ELEMENTS.items():
        el = doc.find(tag)
        if el is None:
            if required:
                problems.append(f"<{tag}>: missing")
            continue
        if len(el):
            problems.append(f"<{tag}>: must be text, has <{el[0].tag}>")
        if not pattern.match(el.text or ""):
            problems.append(f"<{tag}>: {el.text or ''!r} is not valid")
    limit = doc.find("limit")
    if limit is None:
        problems.append("<limit>: missing")
    else:
        names = []
        for el in limit:
            name = el.get("name", "")
            names.append(name)
            if el.tag != "elem" or name not in _LIMITS:
                problems.append(f"<limit>: <{el.tag} name={name!r}> is not a limit")
            elif not _LIMITS[name].match(el.text or ""):
                want = "yes or no" if name.startswith("ipv") else "a whole number of MiB"
                problems.append(f"<limit><elem name={name!r}>: {el.text!r} is not {want}")
        if sorted(names) != sorted(_LIMITS):
            problems.append(f"<limit>: must hold ipv4, ipv6, mem and disk once each: {names}")
    support = doc.find("support")
    if support is None:
        problems.append("<support>: missing")
    else:
        elems = list(support)
        if not elems:
            problems.append("<support>: names no manager (e.g. <elem>VMmgr</elem>)")
        for el in elems:
            if el.tag != "elem" or not _WORD.match(el.text or ""):
                problems.append(f"<support>: <{el.tag}>{el.text}</{el.tag}> is not valid")
    macro = doc.find("macro")
    if macro is not None:
        names = []
        for el in macro:
            name = el.get("name", "")
            names.append(name)
            if el.tag != "elem" or not _MACRO.match(name) or len(el) or (el.text or "").strip():
                problems.append(f'<macro>: <{el.tag} name={name!r}> is not <elem name="($NAME)"/>')
        problems += [f"<macro>: {n} given twice" for n in set(names) if names.count(n) > 1]
    return problems


def _add(tar: tarfile.TarFile, name: str, data: bytes | Path, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = int(datetime.datetime.now(datetime.UTC).timestamp())
    if isinstance(data, Path):
        info.size = data.stat().st_size
        with open(data, "rb") as f:
            tar.addfile(info, f)
    else:
        import io

        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write_archive(dest: Path, meta: Metadata, disk: Path, hddimage: str, disk_size: int) -> None:
    disk_mib = -(-disk_size // (1024 * 1024))
    with tarfile.open(dest, "w:gz", compresslevel=6, format=tarfile.GNU_FORMAT) as tar:
        _add(tar, METAINFO, metainfo(meta, hddimage, disk_mib))
        _add(tar, meta.installdrive, setup_script(meta), 0o755)
        _add(tar, hddimage, disk)


def check_archive(path: Path) -> dict[str, Any]:
    """Check a template archive: the three files, a documented metainfo.xml naming the
    other two, the script's line endings right for its kind."""
    try:
        return _check_archive(path)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DibpyError(f"vmmgr template {path} is truncated or corrupt: {e}") from None


def _check_archive(path: Path) -> dict[str, Any]:
    tar = open_tar(path, "r:gz", "vmmgr template")
    with tar:
        try:
            members = {m.name: m for m in tar.getmembers()}
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DibpyError(f"vmmgr template {path} is truncated or corrupt: {e}") from None
        if METAINFO not in members:
            raise DibpyError(f"vmmgr template {path} lacks {METAINFO}")
        f = tar.extractfile(members[METAINFO])
        assert f is not None
        info = f.read()
        problems = validate_metainfo(info)
        if problems:
            raise DibpyError(
                f"vmmgr template {path}: {METAINFO}: "
                + "; ".join(problems[:3])
                + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            )
        doc = ET.fromstring(info)
        hdd = doc.findtext("hddimage") or ""
        script_name = doc.findtext("installdrive") or ""
        expected = {METAINFO, script_name, hdd}
        if set(members) != expected or len(expected) != 3:
            raise DibpyError(
                f"vmmgr template {path} must hold exactly {sorted(expected)}, "
                f"holds {sorted(members)}"
            )
        s = tar.extractfile(members[script_name])
        assert s is not None
        script = s.read()
        if not script.endswith(b"\n"):
            raise DibpyError(f"vmmgr template {path}: {script_name} does not end in a newline")
        if script_name.lower().endswith(WINDOWS_SCRIPT_SUFFIXES):
            if script.count(b"\n") != script.count(b"\r\n"):
                raise DibpyError(
                    f"vmmgr template {path}: {script_name} must have CR LF line endings"
                )
        elif b"\r" in script:
            raise DibpyError(
                f"vmmgr template {path}: {script_name} has CR characters: a shell script "
                "needs LF line endings"
            )
        d = tar.extractfile(members[hdd])
        assert d is not None
        if members[hdd].size == 0:
            raise DibpyError(f"vmmgr template {path}: {hdd} is empty")
        magic = DISK_MAGIC.get(hdd.rsplit(".", 1)[-1])
        if magic is not None and d.read(len(magic)) != magic:
            raise DibpyError(f"vmmgr template {path}: {hdd} is not a qcow2 image")
        return {
            "osname": doc.findtext("osname"),
            "version": doc.findtext("version"),
            "hddimage": hdd,
            "installdrive": script_name,
            "files": sorted(members),
        }


def metadata_entry(archive: Path, meta: Metadata, hddimage: str) -> dict[str, Any]:
    """This template's entry in a repository's ``metadata.json`` (its ``os`` list)."""
    h = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    size = archive.stat().st_size
    return {
        "name": meta.osname,
        "tags": meta.tags,
        "file_name": archive.name,
        "image_name": hddimage,
        "archive_size_mib": -(-size // (1024 * 1024)),
        "version": meta.version,
        "sha256": h.hexdigest(),
        "updated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def add_to_repository(repo_json: Path, entry: Mapping[str, Any]) -> None:
    """Insert or replace (by name) ``entry`` in a repository's ``metadata.json``
    (``{"type": "os", "os": [...]}``)."""
    doc: dict[str, Any] = {"type": "os", "os": []}
    if repo_json.exists():
        try:
            doc = json.loads(repo_json.read_text())
        except json.JSONDecodeError as e:
            raise DibpyError(f"{repo_json} is not JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("os"), list):
            old = isinstance(doc, dict) and "templates" in doc
            raise DibpyError(
                f'{repo_json} is not a VM-manager repository metadata.json: no "os" list',
                hint='the documented layout is {"type": "os", "os": [...]}'
                + ('; older dibpy wrote "templates": rename it to "os"' if old else ""),
            )
    doc["type"] = doc.get("type") or "os"
    doc["os"] = [t for t in doc["os"] if t.get("name") != entry["name"]]
    doc["os"].append(dict(entry))
    doc["os"].sort(key=lambda t: str(t.get("name")))
    tmp = repo_json.with_name(repo_json.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(repo_json)
