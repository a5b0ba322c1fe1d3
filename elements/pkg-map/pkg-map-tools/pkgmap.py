"""Resolve element pkg-map files for one distro and release (runs on the build host).

A pkg-map file is JSON::

    {"release": {"<distro>": {"<release>": {"name": "mapped"}}},
     "distro": {"<distro>": {"name": "mapped"}},
     "family": {"<family>": {"name": "mapped"}},
     "default": {"name": "mapped"}}

A name resolves to the first of release > distro > family > default that has it.  The
mapped value may hold several space-separated packages, or be empty (install nothing).

Command line::

    pkgmap.py resolve-all OUTDIR   # for every element in IMAGE_ELEMENT_YAML with a pkg-map
    pkgmap.py map FILE DISTRO RELEASE MISSING_OK PREFIX NAME...

``resolve-all`` (the pkg-map element's extra-data.d hook) writes OUTDIR/<element> (a copy
of the JSON) and OUTDIR/<element>.resolved ("name mapped..." lines, the map for
DISTRO_NAME/DIB_RELEASE) so the chroot needs no JSON parser for the build's own distro.
``map`` resolves NAMEs from one pkg-map file for any distro and release (the ``pkg-map``
command's ``--distro``/``--release``/``--pkg-map``); MISSING_OK is 0 or 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FAMILIES = {
    "debian": "debian",
    "ubuntu": "debian",
    "fedora": "redhat",
    "centos": "redhat",
    "rhel": "redhat",
    "rocky": "redhat",
    "almalinux": "redhat",
    "openeuler": "redhat",
    "opensuse": "suse",
    "sles": "suse",
    "gentoo": "gentoo",
}
SECTIONS = ("release", "distro", "family", "default")


class PkgMapError(Exception):
    pass


def family_of(distro: str) -> str:
    return FAMILIES.get(distro, distro)


def image_elements(env: Mapping[str, str]) -> dict[str, Path]:
    """element name -> directory, from IMAGE_ELEMENT_YAML ("name: path" lines)."""
    out: dict[str, Path] = {}
    for line in env.get("IMAGE_ELEMENT_YAML", "").splitlines():
        name, sep, path = line.partition(":")
        if sep and name.strip():
            out[name.strip()] = Path(path.strip())
    return out


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path.read_text().strip() else {}
    except json.JSONDecodeError as e:
        raise PkgMapError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise PkgMapError(f"{path}: a pkg-map must be a JSON object")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise PkgMapError(
            f"{path}: unknown section(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}"
        )
    return data


def flatten(data: Mapping[str, Any], distro: str, release: str) -> dict[str, str]:
    """name -> mapped packages for one distro/release; more specific sections win."""
    layers: list[Any] = [
        data.get("default", {}),
        data.get("family", {}).get(family_of(distro), {}),
        data.get("distro", {}).get(distro, {}),
        data.get("release", {}).get(distro, {}).get(release, {}),
    ]
    out: dict[str, str] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            raise PkgMapError(f"pkg-map section for {distro}/{release} is not an object")
        for k, v in layer.items():
            out[str(k)] = "" if v is None else str(v)
    return out


def map_names(
    names: list[str], mapping: Mapping[str, str] | None, missing_ok: bool = True
) -> list[str]:
    out: list[str] = []
    for n in names:
        if mapping is not None and n in mapping:
            out.extend(mapping[n].split())
        elif mapping is None or missing_ok:
            out.append(n)
        else:
            raise PkgMapError(f"package {n!r} is not in the pkg-map")
    return out


def resolve_all(outdir: Path, env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    distro = env.get("DISTRO_NAME", "")
    release = env.get("DIB_RELEASE", "")
    maps: dict[str, dict[str, str]] = {}
    outdir.mkdir(parents=True, exist_ok=True)
    for name, path in sorted(image_elements(env).items()):
        f = path / "pkg-map"
        if not f.is_file():
            continue
        data = load(f)
        flat = flatten(data, distro, release)
        maps[name] = flat
        (outdir / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        lines = [f"{k} {v}".rstrip() for k, v in sorted(flat.items())]
        (outdir / f"{name}.resolved").write_text("".join(line + "\n" for line in lines))
    return maps


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "resolve-all":
            resolve_all(Path(argv[1]), os.environ)
            return 0
        if len(argv) >= 6 and argv[0] == "map":
            path, distro, release, missing_ok, prefix, *names = argv[1:]
            flat = flatten(load(Path(path)), distro, release)
            for pkg in map_names(names, flat, missing_ok == "1"):
                print(prefix + pkg)
            return 0
    except PkgMapError as e:
        print(f"pkg-map: {e}", file=sys.stderr)
        return 1
    print(
        "usage: pkgmap.py resolve-all OUTDIR | map FILE DISTRO RELEASE MISSING_OK PREFIX NAME...",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
