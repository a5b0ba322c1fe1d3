"""The diskimage-builder YAML front end: validate and merge image entries, then build each
with a child ``disk-image-create`` (``ramdisk-image-create`` for ``ramdisk: true``).

Each file is a YAML list of image entries, validated with a JSON schema (every error is
reported with its file and YAML path before anything runs).  Entries are keyed by
``imagename``: an entry without one belongs to the previous entry's image (the first to
``image``), and an entry naming an image seen before, in any file, merges into it (lists
append, mappings update, other values replace).  Each merged entry runs in a child Python
process of the dibpy this module belongs to.  With ``jobs`` > 1 up to that many images
build at once, each with its own environment and its own TMP_DIR, their log lines
prefixed with the image name.  dibpy.cli.diskimage_builder is the argument parsing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import jsonschema
import yaml

import dibpy
from dibpy import mounts
from dibpy.config import SETTINGS
from dibpy.errors import MultiError

SCHEMA = Path(__file__).resolve().parent / "schemas" / "diskimage-builder.json"

#: the YAML keys in the order diskimage-builder writes their arguments (so that
#: --dry-run prints its command lines)
ORDER = (
    "imagename", "arch", "types", "environment", "ramdisk", "debug-trace", "uncompressed",
    "clear", "logfile", "checksum", "image-size", "image-extra-size", "image-cache",
    "max-online-resize", "min-tmpfs", "mkfs-journal-size", "mkfs-options", "no-tmpfs",
    "offline", "qemu-img-options", "root-label", "ramdisk-element", "install-type",
    "docker-target", "packages", "skip-base", "elements",
)  # fmt: skip
_FRONT_END = {
    "environment": ("", "none"),
    "ramdisk": ("", "none"),
    "elements": ("", "positional"),
}
_FROM_SETTINGS = {s.yaml: (s.flags[0], s.yaml_argument) for s in SETTINGS if s.yaml}
#: YAML key -> (disk-image-create flag, how the value becomes arguments): a build
#: setting's from its declaration in dibpy.config.SETTINGS (``yaml``, ``yaml_argument``),
#: the rest the front end's own.  "value": FLAG VALUE; "switch": FLAG when true;
#: "count": FLAG repeated VALUE times; "list": FLAG A,B; "map": FLAG K=V,K2=V2;
#: "positional": the values themselves; "none": no argument (environment, ramdisk).
KEYS: dict[str, tuple[str, str]] = {k: {**_FROM_SETTINGS, **_FRONT_END}[k] for k in ORDER}

#: the child runs this dibpy's disk-image-create, importing it from where we did
_CHILD = (
    "import sys; root = sys.argv.pop(1)\n"
    "if root not in sys.path: sys.path.insert(0, root)\n"
    "from dibpy.cli.disk_image_create import {func}; sys.exit({func}())\n"
)


def load_entries(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Validate every file, then merge the entries; every problem is reported at once."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[str] = []
    merged: dict[str, dict[str, Any]] = {}
    previous = "image"
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
            continue
        except yaml.YAMLError as e:
            # one line, file:line as an editor jumps to it, not PyYAML's multi-line dump
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            problems.append(f"{where}: invalid YAML: {what}")
            continue
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        for err in errors:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            problems.append(f"{path}: {where or '(top)'}: {err.message}")
        if errors:
            continue
        for item in data or []:
            name = item.get("imagename", previous)
            previous = name
            if name in merged:
                merge(merged[name], item)
            else:
                merged[name] = json.loads(json.dumps(item))
    for name, merged_entry in merged.items():
        if not merged_entry.get("elements"):
            problems.append(f"image {name}: no elements")
    if problems:
        raise MultiError(problems, hint="see the diskimage-builder YAML format in doc/")
    return list(merged.values())


def merge(into: dict[str, Any], item: dict[str, Any]) -> None:
    """diskimage-builder's merge: lists append, mappings update, other values replace."""
    for k, v in item.items():
        if isinstance(v, list):
            into[k] = list(into.get(k) or []) + v
        elif isinstance(v, dict):
            into[k] = {**(into.get(k) or {}), **v}
        else:
            into[k] = v


def to_argv(e: dict[str, Any]) -> list[str]:
    """The disk-image-create arguments for one merged entry."""
    argv: list[str] = []
    for key, (flag, kind) in KEYS.items():
        if key not in e:
            continue
        v = e[key]
        if kind == "value" and v is not None and v != "":
            argv += [flag, str(v)]
        elif kind == "switch" and v:
            argv.append(flag)
        elif kind == "count":
            argv += [flag] * int(v)
        elif kind == "list" and v:
            argv += [flag, ",".join(v)]
        elif kind == "map" and v:
            argv += [flag, ",".join(f"{k}={x}" for k, x in v.items())]
        elif kind == "positional":
            argv += list(v)
    return argv


def image_name(e: dict[str, Any]) -> str:
    return str(e.get("imagename", "image"))


def command_line(e: dict[str, Any]) -> str:
    """What --dry-run prints: the environment and the command, quoted for a shell."""
    prog = "ramdisk-image-create" if e.get("ramdisk") else "disk-image-create"
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in e.get("environment", {}).items())
    return (envs + " " if envs else "") + shlex.join([prog, *to_argv(e)])


def child_command(e: dict[str, Any]) -> list[str]:
    """The child process that builds ``e`` with this very dibpy (``-P``: the working
    directory is not put on sys.path, so a checkout there cannot shadow it)."""
    func = "ramdisk_main" if e.get("ramdisk") else "main"
    root = str(Path(dibpy.__file__).resolve().parent.parent)
    return [sys.executable, "-P", "-c", _CHILD.format(func=func), root, *to_argv(e)]


_print_lock = threading.Lock()


def _relay(stream: IO[str], prefix: str, out: IO[str]) -> None:
    for line in stream:
        with _print_lock:
            out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            out.flush()


_running: set[subprocess.Popen[Any]] = set()


def _wait(proc: subprocess.Popen[Any]) -> int:
    """Wait for a build child; if we are interrupted, let it unwind its own mounts and
    loop devices (SIGTERM, which dibpy turns into a clean unwind) before we go."""
    _running.add(proc)
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    finally:
        _running.discard(proc)


def _forward(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP to us: pass it to every running build (each cleans up and fails,
    and is reported as failed) and start no more."""
    _stop.set()
    for proc in list(_running):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)


_stop = threading.Event()


def build_one(e: dict[str, Any], *, isolated: bool) -> int:
    """Build one merged entry in a child process; return its exit status.

    ``isolated`` (parallel builds): the child gets a TMP_DIR and TMPDIR of its own, made
    here under the TMP_DIR it would have used and removed once it exits (left in place,
    with a warning, if a mount under it survived), and its output lines are prefixed
    with the image name.
    """
    env = dict(os.environ)
    env.update(e.get("environment", {}))
    env.setdefault("DIB_PYTHON_EXEC", sys.executable)
    cmd = child_command(e)
    name = image_name(e)
    if not isolated:
        return _wait(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL))
    base = Path(env.get("TMP_DIR") or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix=f"dibpy-{Path(name).name}.", dir=base))
    env["TMP_DIR"] = env["TMPDIR"] = str(work)
    prefix = f"[{name}] "
    try:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None and proc.stderr is not None
        relays = [
            threading.Thread(target=_relay, args=(proc.stdout, prefix, sys.stdout)),
            threading.Thread(target=_relay, args=(proc.stderr, prefix, sys.stderr)),
        ]
        for t in relays:
            t.start()
        try:
            return _wait(proc)
        finally:
            for t in relays:
                t.join()
    finally:
        if mounts.has_mounts_below(work):
            with _print_lock:
                print(f"{prefix}warning: something is still mounted under {work}; left it")
        else:
            shutil.rmtree(work, ignore_errors=True)


def build_all(
    entries: Sequence[dict[str, Any]], *, jobs: int = 1, stop_on_failure: bool = False
) -> int:
    """Build every merged entry (up to ``jobs`` at once); the exit status of the first
    failure, 1 if an image was not started, else 0.  SIGTERM/SIGHUP are passed on to the
    running builds meanwhile."""
    failed: dict[str, int] = {}
    started: set[str] = set()
    isolated = jobs > 1
    _stop.clear()

    def run(e: dict[str, Any]) -> None:
        if _stop.is_set():
            return
        started.add(image_name(e))
        if not isolated:
            print(command_line(e), file=sys.stderr, flush=True)
        rc = build_one(e, isolated=isolated)
        if rc != 0:
            failed[image_name(e)] = rc
            if stop_on_failure:
                _stop.set()

    previous = {sig: signal.signal(sig, _forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if isolated:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for f in [pool.submit(run, e) for e in entries]:
                    f.result()
        else:
            for e in entries:
                run(e)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    skipped = [image_name(e) for e in entries if image_name(e) not in started]
    if skipped:
        print(f"diskimage-builder: not built: {', '.join(skipped)}", file=sys.stderr)
    if failed:
        names = ", ".join(f"{n} (exit status {rc})" for n, rc in failed.items())
        print(f"diskimage-builder: failed: {names}", file=sys.stderr)
        rc = next(iter(failed.values()))
        return rc if rc > 0 else 1
    return 1 if skipped else 0
