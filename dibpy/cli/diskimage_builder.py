"""diskimage-builder FILE...: build images described in YAML, like diskimage-builder's command.

Each file is a YAML list of image entries, validated with a JSON schema (every error is
reported with its file and YAML path before anything runs).  An entry without
``imagename``, or with the name of the previous entry, merges into the previous one (lists
append, mappings update).  Each merged entry runs one ``disk-image-create``.
Unlike diskimage-builder's, ``image-extra-size`` and ``mkfs-journal-size`` work.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dibpy.cli import entry
from dibpy.errors import ConfigError, MultiError

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "diskimage-builder.json"

_FLAGS = {
    "imagename": "-o",
    "arch": "-a",
    "install-type": "--install-type",
    "logfile": "--logfile",
    "image-size": "--image-size",
    "image-extra-size": "--image-extra-size",
    "image-cache": "--image-cache",
    "max-online-resize": "--max-online-resize",
    "min-tmpfs": "--min-tmpfs",
    "mkfs-journal-size": "--mkfs-journal-size",
    "mkfs-options": "--mkfs-options",
    "root-label": "--root-label",
    "ramdisk-element": "--ramdisk-element",
}
_SWITCHES = {
    "uncompressed": "-u",
    "clear": "-c",
    "checksum": "--checksum",
    "no-tmpfs": "--no-tmpfs",
    "offline": "--offline",
    "skip-base": "-n",
}


def load_entries(paths: Sequence[Path]) -> list[dict[str, Any]]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[str] = []
    merged: list[dict[str, Any]] = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
            continue
        except yaml.YAMLError as e:
            problems.append(f"{path}: invalid YAML: {e}")
            continue
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        for err in errors:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            problems.append(f"{path}: {where or '(top)'}: {err.message}")
        if errors:
            continue
        for item in data or []:
            name = item.get("imagename")
            if merged and (name is None or name == merged[-1].get("imagename")):
                _merge(merged[-1], item)
            else:
                merged.append(dict(item))
    if problems:
        raise MultiError(problems, hint="see the diskimage-builder YAML format in doc/")
    for i, entry_ in enumerate(merged):
        if not entry_.get("elements"):
            name = entry_.get("imagename", "image")
            raise ConfigError(f"image entry {i} ({name}) has no elements")
    return merged


def _merge(into: dict[str, Any], item: dict[str, Any]) -> None:
    for k, v in item.items():
        if isinstance(v, list) and isinstance(into.get(k), list):
            into[k] = into[k] + v
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            into[k] = {**into[k], **v}
        else:
            into[k] = v


def to_argv(e: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, flag in _FLAGS.items():
        if key in e:
            argv += [flag, str(e[key])]
    for key, flag in _SWITCHES.items():
        if e.get(key):
            argv.append(flag)
    if e.get("types"):
        argv += ["-t", ",".join(e["types"])]
    argv += ["-x"] * int(e.get("debug-trace", 0))
    if e.get("qemu-img-options"):
        argv += [
            "--qemu-img-options",
            ",".join(f"{k}={v}" for k, v in e["qemu-img-options"].items()),
        ]
    for pkg in e.get("packages", []):
        argv += ["-p", pkg]
    return argv + list(e["elements"])


def main_args(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="diskimage-builder", description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="print the commands, build nothing")
    p.add_argument("--stop-on-failure", action="store_true", help="stop at the first failed image")
    p.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    entries = load_entries(args.files)
    bindir = Path(__file__).resolve().parent.parent.parent / "bin"
    failed = 0
    for e in entries:
        prog = "ramdisk-image-create" if e.get("ramdisk") else "disk-image-create"
        cmd = [sys.executable, str(bindir / prog), *to_argv(e)]
        env = dict(os.environ, **e.get("environment", {}))
        if args.dry_run:
            envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in e.get("environment", {}).items())
            print((envs + " " if envs else "") + shlex.join([prog, *to_argv(e)]))
            continue
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            failed += 1
            print(f"diskimage-builder: image {e.get('imagename', 'image')} failed", file=sys.stderr)
            if args.stop_on_failure:
                return rc
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return entry(main_args, "diskimage-builder", argv)
