"""svc-map: merging the elements' svc-map files for a distribution, and the svc-map command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

TOOL = REPO / "elements" / "svc-map" / "svc-map-tools" / "svcmap.py"
CMD = REPO / "elements" / "svc-map" / "bin" / "svc-map"


def merge(tmp_path: Path, distro: str, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    lines = []
    for name, text in files.items():
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "svc-map").write_text(text)
        lines.append(f"{name}: {tmp_path / name}")
    env = {**os.environ, "DISTRO_NAME": distro, "IMAGE_ELEMENT_YAML": "\n".join(lines)}
    out = tmp_path / "services"
    return subprocess.run(
        [sys.executable, str(TOOL), str(out)], env=env, capture_output=True, text=True
    )


NOVA = (
    "nova-api:\n  default: openstack-nova-api\n  debian: nova-api\n"
    "web:\n  ubuntu: apache2\n  default: httpd\n"
)


def test_most_specific_key_wins(tmp_path: Path) -> None:
    for distro, expected in (
        ("debian", "nova-api nova-api\nweb httpd\n"),
        ("ubuntu", "nova-api nova-api\nweb apache2\n"),
        ("centos", "nova-api openstack-nova-api\nweb httpd\n"),
    ):
        r = merge(tmp_path, distro, {"nova": NOVA})
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "services").read_text() == expected


def test_command_maps_and_passes_unknown_names_through(tmp_path: Path) -> None:
    assert merge(tmp_path, "centos", {"nova": NOVA}).returncode == 0
    env = {**os.environ, "DIB_SVC_MAP_FILE": str(tmp_path / "services")}
    r = subprocess.run(
        ["bash", str(CMD), "nova-api", "other"], env=env, capture_output=True, text=True
    )
    assert r.stdout.split() == ["openstack-nova-api", "other"]


def test_conflicting_elements_are_named(tmp_path: Path) -> None:
    r = merge(tmp_path, "debian", {"a": "svc:\n  default: one\n", "b": "svc:\n  debian: two\n"})
    assert r.returncode == 1
    assert "svc maps to one in element a but to two in b" in r.stderr


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    r = merge(tmp_path, "debian", {"a": "svc: just-a-string\n"})
    assert r.returncode == 1
    assert str(tmp_path / "a" / "svc-map") in r.stderr and "expected a map" in r.stderr
