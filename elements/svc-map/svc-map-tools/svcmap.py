"""Merge every element's ``svc-map`` file for one distribution (runs on the build host).

A ``svc-map`` file is YAML: service name -> {distro or family or "default": name}::

    nova-api:
      default: openstack-nova-api
      debian: nova-api

The most specific key wins (distro > family > default).  Writes OUTFILE with one
"service mapped-name" line per service, for the image's ``svc-map`` command.

Usage: svcmap.py OUTFILE   (elements from IMAGE_ELEMENT_YAML, distro from DISTRO_NAME)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

FAMILIES = {
    "debian": "debian", "ubuntu": "debian",
    "centos": "redhat", "rhel": "redhat", "fedora": "redhat", "rocky": "redhat",
    "almalinux": "redhat", "openeuler": "redhat",
    "opensuse": "suse", "sles": "suse",
}  # fmt: skip


def resolve(entries: dict[str, object], distro: str, where: str) -> dict[str, str]:
    family = FAMILIES.get(distro, distro)
    out: dict[str, str] = {}
    for service, choices in entries.items():
        if not isinstance(choices, dict):
            raise ValueError(f"{where}: {service}: expected a map of distro/family/default")
        for key in (distro, family, "default"):
            if key in choices:
                mapped = str(choices[key])
                if not mapped or any(c.isspace() for c in mapped):
                    raise ValueError(f"{where}: {service}.{key}: {mapped!r} is not a name")
                out[str(service)] = mapped
                break
    return out


def main(argv: list[str]) -> int:
    distro = os.environ.get("DISTRO_NAME", "")
    merged: dict[str, tuple[str, str]] = {}
    for line in os.environ.get("IMAGE_ELEMENT_YAML", "").splitlines():
        name, sep, path = line.partition(":")
        name = name.strip()
        f = Path(path.strip()) / "svc-map"
        if not sep or not f.is_file():
            continue
        try:
            data = yaml.safe_load(f.read_text()) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{f}: expected a map of service names")
            mapped = resolve(data, distro, str(f))
        except (yaml.YAMLError, ValueError) as e:
            print(f"svc-map: {e}", file=sys.stderr)
            return 1
        for service, target in mapped.items():
            if service in merged and merged[service][0] != target:
                other, where = merged[service]
                msg = f"{service} maps to {other} in element {where} but to {target} in {name}"
                print(f"svc-map: {msg}", file=sys.stderr)
                return 1
            merged[service] = (target, name)
    Path(argv[1]).write_text("".join(f"{s} {t}\n" for s, (t, _) in sorted(merged.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
