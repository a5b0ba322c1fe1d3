"""VM-manager OS templates: the metadata, the ``metainfo.xml``, the archive and its check.

A template is a ``.tar.gz`` of exactly three files: ``metainfo.xml``, the initial setup
script (CR LF line endings) and the disk image the metainfo names as ``hddimage``.
Beside it the build writes the template's entry for the repository's ``metadata.json``.

The metadata comes from a YAML file (``DIB_VMMGR_METADATA``) and ``DIB_VMMGR_*``
variables (a variable wins over the file), validated together against
``dibpy/schemas/vmmgr.json``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dibpy.errors import ConfigError, DibpyError, MultiError
from dibpy.outputs import open_tar

SCRIPT_NAME = "setup.sh"
METAINFO = "metainfo.xml"
DISK_MAGIC = {"qcow2": b"QFI\xfb"}

#: each command ends in " #": a CR before the line feed then only ends a comment
DEFAULT_SCRIPT = """\
#!/bin/sh
# initial setup of a VM made from this template; the VM manager replaces ($NAME) macros #
set -eu #
hostname '($HOSTNAME)' #
echo '($HOSTNAME)' > /etc/hostname #
echo 'root:($PASS)' | chpasswd #
if command -v cloud-init >/dev/null 2>&1; then cloud-init clean || true; fi #
rm -f /etc/machine-id /var/lib/dbus/machine-id #
systemd-machine-id-setup >/dev/null 2>&1 || true #
"""

DEFAULTS: dict[str, Any] = {
    "version": "1.0",
    "limits": {"ipv4": 1, "ipv6": 0, "mem": 512},
    "support": [],
    "tags": [],
    "rebootcount": 1,
    "installdrive": "vda",
    "virtiodisk": True,
    "virtionet": True,
    "macros": [],
    "disk_format": "qcow2",
}

#: variable -> (key path, kind)
VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "DIB_VMMGR_OSNAME": (("osname",), "str"),
    "DIB_VMMGR_VERSION": (("version",), "str"),
    "DIB_VMMGR_LIMIT_IPV4": (("limits", "ipv4"), "int"),
    "DIB_VMMGR_LIMIT_IPV6": (("limits", "ipv6"), "int"),
    "DIB_VMMGR_LIMIT_MEM": (("limits", "mem"), "int"),
    "DIB_VMMGR_LIMIT_DISK": (("limits", "disk"), "int"),
    "DIB_VMMGR_SUPPORT": (("support",), "list"),
    "DIB_VMMGR_TAGS": (("tags",), "list"),
    "DIB_VMMGR_REBOOTCOUNT": (("rebootcount",), "int"),
    "DIB_VMMGR_INSTALLDRIVE": (("installdrive",), "str"),
    "DIB_VMMGR_VIRTIODISK": (("virtiodisk",), "bool"),
    "DIB_VMMGR_VIRTIONET": (("virtionet",), "bool"),
    "DIB_VMMGR_MACROS": (("macros",), "macros"),
    "DIB_VMMGR_DISK_FORMAT": (("disk_format",), "str"),
    "DIB_VMMGR_SETUP_SCRIPT": (("setup_script",), "str"),
    "DIB_VMMGR_REPOSITORY": (("repository",), "str"),
}


@dataclass(frozen=True)
class Metadata:
    osname: str
    version: str
    limits: dict[str, int]
    support: list[str]
    tags: list[str]
    rebootcount: int
    installdrive: str
    virtiodisk: bool
    virtionet: bool
    macros: list[dict[str, str]]
    disk_format: str
    setup_script: Path | None = None
    repository: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def disk_extension(self) -> str:
        return self.disk_format


def schema() -> dict[str, Any]:
    text = resources.files("dibpy").joinpath("schemas/vmmgr.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _convert(var: str, value: str, kind: str) -> Any:
    if kind == "int":
        if not re.match(r"^-?[0-9]+$", value.strip()):
            raise ConfigError(f"{var}={value}: not an integer")
        return int(value)
    if kind == "bool":
        v = value.strip().lower()
        if v in ("1", "on", "yes", "true"):
            return True
        if v in ("0", "off", "no", "false"):
            return False
        raise ConfigError(f"{var}={value}: not on/off")
    if kind == "list":
        return [v.strip() for v in value.split(",") if v.strip()]
    if kind == "macros":
        return [{"name": v.strip()} for v in value.split(",") if v.strip()]
    return value


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def load(environ: Mapping[str, str], image_name: str = "") -> Metadata:
    """The template metadata from DIB_VMMGR_METADATA and DIB_VMMGR_* (every error at once)."""
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
            raise ConfigError(f"DIB_VMMGR_METADATA: {p} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{origin}: the top level must be a mapping")
        data = loaded
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
            target = target.setdefault(k, {}) if isinstance(target.get(k, {}), dict) else {}
        target[keys[-1]] = value
    if "osname" not in data and image_name:
        data["osname"] = re.sub(r"[^A-Za-z0-9._+-]+", "-", image_name).strip("-") or "image"
    validator = jsonschema.Draft202012Validator(schema())
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        problems.append(f"{origin}: {_where(err.absolute_path)}: {err.message}")
    if problems:
        raise MultiError(problems, hint="doc/outputs.md describes the vmmgr metadata")
    merged = {**DEFAULTS, **data}
    merged["limits"] = {**DEFAULTS["limits"], **data.get("limits", {})}
    script = merged.get("setup_script")
    script_path = None
    if script:
        script_path = Path(script) if Path(script).is_absolute() else base_dir / script
        if not script_path.is_file():
            raise ConfigError(f"{origin}: setup_script: {script_path} does not exist")
    repo = merged.get("repository")
    return Metadata(
        osname=merged["osname"],
        version=str(merged["version"]),
        limits=dict(merged["limits"]),
        support=list(merged["support"]),
        tags=list(merged["tags"]),
        rebootcount=int(merged["rebootcount"]),
        installdrive=merged["installdrive"],
        virtiodisk=bool(merged["virtiodisk"]),
        virtionet=bool(merged["virtionet"]),
        macros=list(merged["macros"]),
        disk_format=merged["disk_format"],
        setup_script=script_path,
        repository=Path(repo) if repo else None,
    )


def crlf(text: str) -> bytes:
    """``text`` with every line ending CR LF (and a final one)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(line + "\r\n" for line in lines).encode()


def setup_script(meta: Metadata) -> bytes:
    text = meta.setup_script.read_text() if meta.setup_script else DEFAULT_SCRIPT
    return crlf(text)


def metainfo(meta: Metadata, hddimage: str, disk_mib: int) -> bytes:
    """The template's ``metainfo.xml``."""
    doc = ET.Element("doc")
    ET.SubElement(doc, "osname").text = meta.osname
    limits = {**meta.limits}
    limits.setdefault("disk", disk_mib)
    for name in ("ipv4", "ipv6", "mem", "disk"):
        ET.SubElement(doc, "limit", {"name": name}).text = str(limits[name])
    support = ET.SubElement(doc, "support")
    for s in meta.support:
        ET.SubElement(support, "elem").text = s
    tags = ET.SubElement(doc, "tags")
    for t in meta.tags:
        ET.SubElement(tags, "elem").text = t
    ET.SubElement(doc, "version").text = meta.version
    ET.SubElement(doc, "hddimage").text = hddimage
    ET.SubElement(doc, "rebootcount").text = str(meta.rebootcount)
    ET.SubElement(doc, "type").text = "ostemplate"
    ET.SubElement(doc, "installdrive").text = meta.installdrive
    ET.SubElement(doc, "virtiodisk").text = "on" if meta.virtiodisk else "off"
    ET.SubElement(doc, "virtionet").text = "on" if meta.virtionet else "off"
    macros = ET.SubElement(doc, "macros")
    for m in meta.macros:
        attrs = {"name": m["name"], "macro": "($" + m["name"] + ")"}
        el = ET.SubElement(macros, "macro", attrs)
        if m.get("default"):
            el.set("default", m["default"])
        if m.get("description"):
            el.text = m["description"]
    ET.indent(doc)
    return bytes(ET.tostring(doc, encoding="utf-8", xml_declaration=True)) + b"\n"


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
        _add(tar, SCRIPT_NAME, setup_script(meta), 0o755)
        _add(tar, hddimage, disk)


def check_archive(path: Path) -> dict[str, Any]:
    """Check a template archive: three parts, CR LF script, valid metainfo naming the disk."""
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
        try:
            doc = ET.fromstring(f.read())
        except ET.ParseError as e:
            raise DibpyError(f"vmmgr template {path}: {METAINFO} is not valid XML: {e}") from None
        if doc.findtext("type") != "ostemplate":
            raise DibpyError(f"vmmgr template {path}: {METAINFO} type is not ostemplate")
        for tag in ("osname", "version", "hddimage", "installdrive", "rebootcount"):
            if not (doc.findtext(tag) or "").strip():
                raise DibpyError(f"vmmgr template {path}: {METAINFO} lacks <{tag}>")
        limits = {el.get("name") for el in doc.iterfind("limit")}
        if not {"ipv4", "ipv6", "mem", "disk"} <= limits:
            raise DibpyError(f"vmmgr template {path}: {METAINFO} lacks limits ipv4/ipv6/mem/disk")
        hdd = doc.findtext("hddimage") or ""
        expected = {METAINFO, SCRIPT_NAME, hdd}
        if set(members) != expected:
            raise DibpyError(
                f"vmmgr template {path} must hold exactly {sorted(expected)}, "
                f"holds {sorted(members)}"
            )
        s = tar.extractfile(members[SCRIPT_NAME])
        assert s is not None
        script = s.read()
        if not script.endswith(b"\r\n") or script.count(b"\n") != script.count(b"\r\n"):
            raise DibpyError(f"vmmgr template {path}: {SCRIPT_NAME} must have CR LF line endings")
        d = tar.extractfile(members[hdd])
        assert d is not None
        fmt = hdd.rsplit(".", 1)[-1]
        magic = DISK_MAGIC.get(fmt)
        if magic is not None and d.read(len(magic)) != magic:
            raise DibpyError(f"vmmgr template {path}: {hdd} is not a {fmt} image")
        if members[hdd].size == 0:
            raise DibpyError(f"vmmgr template {path}: {hdd} is empty")
        return {
            "osname": doc.findtext("osname"),
            "version": doc.findtext("version"),
            "hddimage": hdd,
            "files": sorted(members),
        }


def metadata_entry(archive: Path, meta: Metadata, hddimage: str) -> dict[str, Any]:
    """This template's entry in a repository's ``metadata.json``."""
    h = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    return {
        "name": meta.osname,
        "version": meta.version,
        "type": "ostemplate",
        "file": archive.name,
        "size": archive.stat().st_size,
        "sha256": h.hexdigest(),
        "hddimage": hddimage,
        "tags": meta.tags,
        "limits": meta.limits,
        "updated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def add_to_repository(repo_json: Path, entry: Mapping[str, Any]) -> None:
    """Insert or replace (by name) ``entry`` in a repository metadata.json."""
    doc: dict[str, Any] = {"templates": []}
    if repo_json.exists():
        try:
            doc = json.loads(repo_json.read_text())
        except json.JSONDecodeError as e:
            raise DibpyError(f"{repo_json} is not JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("templates"), list):
            raise DibpyError(f"{repo_json} has no 'templates' list")
    doc["templates"] = [t for t in doc["templates"] if t.get("name") != entry["name"]]
    doc["templates"].append(dict(entry))
    doc["templates"].sort(key=lambda t: str(t.get("name")))
    tmp = repo_json.with_name(repo_json.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(repo_json)
