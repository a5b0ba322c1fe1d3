"""The diskimage-builder YAML front-end: schema errors with their paths, merging, argv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.cli.diskimage_builder import load_entries, to_argv
from dibpy.errors import ConfigError
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "images.yaml"
    p.write_text(text)
    return p


def test_entries_merge_like_diskimage_builder(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "- imagename: a\n  elements: [debian-minimal]\n  environment: {X: '1'}\n"
        "- elements: [vm]\n  environment: {Y: '2'}\n"
        "- imagename: a\n  packages: [vim]\n"
        "- imagename: b\n  elements: [debian]\n",
    )
    entries = load_entries([p])
    assert [e["imagename"] for e in entries] == ["a", "b"]
    assert entries[0]["elements"] == ["debian-minimal", "vm"]
    assert entries[0]["environment"] == {"X": "1", "Y": "2"}
    assert to_argv(entries[0]) == ["-o", "a", "-p", "vim", "debian-minimal", "vm"]


def test_sizes_that_diskimage_builder_rejects_work(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "- imagename: a\n  elements: [x]\n  image-extra-size: 2\n  mkfs-journal-size: 32\n",
    )
    argv = to_argv(load_entries([p])[0])
    assert argv[argv.index("--image-extra-size") + 1] == "2"
    assert argv[argv.index("--mkfs-journal-size") + 1] == "32"


def test_every_schema_error_reported_with_its_path(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "- imagename: a\n  elements: [x]\n  debug-trace: 5\n"
        "- imagename: b\n  bogus: 1\n  elements: [y]\n",
    )
    with pytest.raises(ConfigError) as e:
        load_entries([p])
    msg = str(e.value)
    assert "[0].debug-trace" in msg and "[1]" in msg and "bogus" in msg and str(p) in msg


def test_cli_dry_run_and_bad_file(tmp_path: Path) -> None:
    p = write(tmp_path, "- imagename: a\n  elements: [debian-minimal, vm]\n  types: [qcow2, raw]\n")
    cmd = [sys.executable, str(REPO / "bin" / "diskimage-builder")]
    r = subprocess.run([*cmd, "--dry-run", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "disk-image-create -o a -t qcow2,raw debian-minimal vm"
    r = subprocess.run([*cmd, str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "missing.yaml" in r.stderr
