"""The diskimage-builder YAML front-end against diskimage-builder's own: its schema, its
key -> argument mapping and its merging, compared with the unpacked 3.43.0 release run in
a subprocess; plus schema errors with their paths and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dibpy.errors import ConfigError
from dibpy.yamlbuild import KEYS, SCHEMA, child_command, load_entries, to_argv
from tests.conftest import REPO
from tests.dibref import dib_release

#: every key diskimage-builder documents, with values that give an argument
FULL_ENTRY: dict[str, Any] = {
    "imagename": "full",
    "arch": "amd64",
    "types": ["qcow2", "raw"],
    "install-type": "package",
    "environment": {"DIB_RELEASE": "bookworm", "X": "a b"},
    "ramdisk": False,
    "debug-trace": 2,
    "uncompressed": True,
    "clear": True,
    "logfile": "/tmp/full.log",
    "checksum": True,
    "image-size": 3,
    "image-extra-size": 2,
    "max-online-resize": 1000,
    "min-tmpfs": 4,
    "mkfs-journal-size": 32,
    "image-cache": "/var/cache/x",
    "mkfs-options": "-O ^metadata_csum",
    "no-tmpfs": True,
    "offline": True,
    "qemu-img-options": {"compat": "0.10", "cluster_size": "2M"},
    "root-label": "root",
    "ramdisk-element": "dracut-ramdisk",
    "docker-target": "repo/img:tag",
    "packages": ["vim", "curl"],
    "skip-base": True,
    "elements": ["debian-minimal", "vm"],
}

_ORACLE = """
import json, sys
from diskimage_builder import diskimage_builder as d
what = sys.argv[1]
if what == "schema":
    print(json.dumps(d.DIB_SCHEMA))
else:
    cmds = d.build_commands(json.load(sys.stdin))
    print(json.dumps([{"args": c.args, "env": c.environ,
                       "ramdisk": c.script.endswith("ramdisk-image-create")} for c in cmds]))
"""


def dib(what: str, definition: object = None) -> Any:
    """Ask diskimage-builder's own YAML front end (the unpacked release)."""
    env = dict(os.environ, PYTHONPATH=str(dib_release()))
    r = subprocess.run(
        [sys.executable, "-c", _ORACLE, what],
        input=json.dumps(definition),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(r.stdout)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "images.yaml"
    p.write_text(text)
    return p


def ours(tmp_path: Path, definition: list[dict[str, Any]]) -> list[dict[str, Any]]:
    p = tmp_path / "def.yaml"
    p.write_text(json.dumps(definition))
    return [
        {"args": to_argv(e), "env": e.get("environment", {}), "ramdisk": bool(e.get("ramdisk"))}
        for e in load_entries([p])
    ]


def test_schema_has_every_key_of_diskimage_builders_with_its_type() -> None:
    theirs = dib("schema")["items"]["properties"]
    mine = json.loads(SCHEMA.read_text())["items"]["properties"]
    assert set(mine) == set(theirs) == set(KEYS)
    for key, t in theirs.items():
        assert mine[key]["type"] == t["type"], key
        if "minimum" in t:
            assert mine[key]["minimum"] == t["minimum"], key
        if "enum" in t:
            m = mine[key]
            allowed = set(m["enum"]) if "enum" in m else set(range(m["minimum"], m["maximum"] + 1))
            assert set(t["enum"]) <= allowed, key
        if "items" in t and "enum" in t["items"]:
            # dibpy writes more output types than diskimage-builder; any it writes pass
            assert "enum" not in mine[key]["items"], key


def test_every_key_maps_to_the_arguments_diskimage_builder_passes(tmp_path: Path) -> None:
    assert ours(tmp_path, [FULL_ENTRY]) == dib("commands", [FULL_ENTRY])


@pytest.mark.parametrize(
    "definition",
    [
        # no name: the first is "image"; unnamed entries join the previous image
        [{"elements": ["a"]}, {"elements": ["b"], "packages": ["p"]}],
        # a name seen before, even not just before, merges into that image
        [
            {"imagename": "x", "elements": ["a"], "environment": {"A": "1"}, "types": ["raw"]},
            {"imagename": "y", "elements": ["b"], "ramdisk": True},
            {"elements": ["c"], "debug-trace": 1},
            {"imagename": "x", "elements": ["d"], "environment": {"B": "2"}, "types": ["tar"]},
            {"imagename": "image", "elements": ["e"]},
            {"imagename": "x", "environment": {"A": "3"}, "qemu-img-options": {"k": "v"}},
        ],
        # scalars replace, falsy values give no argument
        [
            {"imagename": "z", "elements": ["a"], "checksum": True, "image-size": 2},
            {"imagename": "z", "checksum": False, "image-size": 5, "logfile": ""},
        ],
    ],
)
def test_merging_matches_diskimage_builder(tmp_path: Path, definition: list[Any]) -> None:
    assert ours(tmp_path, definition) == dib("commands", definition)


def test_merging_spans_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("- imagename: a\n  elements: [x]\n")
    b.write_text("- elements: [y]\n- imagename: a\n  packages: [p]\n")
    (e,) = load_entries([a, b])
    assert to_argv(e) == ["-o", "a", "-p", "p", "x", "y"]


def test_sizes_that_diskimage_builder_rejects_work(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "- imagename: a\n  elements: [x]\n  image-extra-size: 2\n  mkfs-journal-size: 32\n",
    )
    argv = to_argv(load_entries([p])[0])
    assert argv[argv.index("--image-extra-size") + 1] == "2"
    assert argv[argv.index("--mkfs-journal-size") + 1] == "32"


def test_every_problem_reported_with_its_path(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "- imagename: a\n  elements: [x]\n  debug-trace: 5\n"
        "- imagename: b\n  bogus: 1\n  elements: [y]\n",
    )
    q = tmp_path / "noelements.yaml"
    q.write_text("- imagename: c\n  types: [raw]\n")
    with pytest.raises(ConfigError) as e:
        load_entries([p, q])
    msg = str(e.value)
    assert "[0].debug-trace" in msg and "[1]" in msg and "bogus" in msg and str(p) in msg
    assert "image c: no elements" in msg


def test_child_runs_this_dibpy_not_a_path_in_a_checkout() -> None:
    cmd = child_command({"imagename": "a", "elements": ["x"]})
    assert cmd[:3] == [sys.executable, "-P", "-c"]
    assert "dibpy.cli.disk_image_create import main" in cmd[3]
    assert cmd[4] == str(REPO) and cmd[5:] == ["-o", "a", "x"]
    assert "ramdisk_main" in child_command({"ramdisk": True, "elements": ["x"]})[3]


def test_cli_dry_run_and_bad_file(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "- imagename: a\n  elements: [debian-minimal, vm]\n  types: [qcow2, raw]\n"
        "  environment: {DIB_RELEASE: 'x y'}\n  docker-target: r:t\n"
        "- imagename: b\n  ramdisk: true\n  elements: [e]\n",
    )
    cmd = [sys.executable, str(REPO / "bin" / "diskimage-builder")]
    r = subprocess.run([*cmd, "--dry-run", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "DIB_RELEASE='x y' disk-image-create -o a -t qcow2,raw --docker-target r:t "
        "debian-minimal vm",
        "ramdisk-image-create -o b e",
    ]
    r = subprocess.run([*cmd, str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "missing.yaml" in r.stderr
    r = subprocess.run([*cmd, "-j", "0", str(p)], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "-j 0" in r.stderr


def test_stop_on_failure_starts_no_further_image(tmp_path: Path) -> None:
    # an unknown element fails each build while checking its elements, before any work
    p = write(
        tmp_path,
        "- imagename: a\n  skip-base: true\n  elements: [no-such-element]\n"
        "- imagename: b\n  skip-base: true\n  elements: [no-such-element]\n",
    )
    cmd = [sys.executable, str(REPO / "bin" / "diskimage-builder")]
    env = dict(os.environ, ELEMENTS_PATH=str(tmp_path), TMP_DIR=str(tmp_path))
    r = subprocess.run(
        [*cmd, "--stop-on-failure", str(p)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "failed: a (exit status" in r.stderr and "not built: b" in r.stderr
    assert "disk-image-create -o b" not in r.stderr
    r = subprocess.run([*cmd, str(p)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and "failed: a (exit status 2), b (exit status 2)" in r.stderr
