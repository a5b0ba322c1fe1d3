"""Crash recovery: what a build killed with SIGKILL (or a power cut) left behind.

Nothing in the build can clean up after ``kill -KILL``, so every build leaves a note
beside its build directory, ``TMP_DIR/dib_build.XXXX.owner`` (JSON: its pid and that
process's start time, its outputs, the NAME.d it made).  The note is outside the build
directory so that the build's tmpfs, mounted over the directory, cannot hide it.

:func:`clean_dead` finds the notes of builds whose process is gone (a pid alone is not
enough: it may have been reused, so the start time must match too) and removes what each
left: processes still running in its tree, the loop devices and mounts in its
block-device journal, every other mount under its directory, loop devices backed by a
file in it, its partial outputs and the NAME.d it made, then the directory and the note.
A live build's resources are never touched.  ``dibpy cleanup`` runs it, and so does
every build before it starts (for its own TMP_DIR).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dibpy import loopdev, mounts
from dibpy.errors import DibpyError
from dibpy.log import LOG

SUFFIX = ".owner"


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def work_dir(parent: Path) -> Path:
    """A new directory ``parent/.build-PID-START-XXXX`` for this process's work beside a
    shared cache (the caller removes it); :func:`sweep_work_dirs` removes those of
    processes that are gone."""
    pid = os.getpid()
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".build-{pid}-{start_time(pid)}-", dir=parent))


_WORK_DIR = re.compile(r"\.build-(\d+)-(\d+)-")


def sweep_work_dirs(parent: Path) -> None:
    """Remove the :func:`work_dir` directories under ``parent`` of builds that are gone
    (killed outright: nothing of theirs could remove them)."""
    for p in parent.glob(".build-*"):
        m = _WORK_DIR.match(p.name)
        if m and start_time(int(m.group(1))) != m.group(2):
            shutil.rmtree(p, ignore_errors=True)


def note_path(build_dir: Path) -> Path:
    return build_dir.with_name(build_dir.name + SUFFIX)


def claim(build_dir: Path, outputs: list[Path]) -> None:
    """Write the note of a build directory this process has just made."""
    _write(
        note_path(build_dir),
        {
            "pid": os.getpid(),
            "start": start_time(os.getpid()),
            "build_dir": str(build_dir),
            "outputs": [str(o) for o in outputs],
            "made": [],
        },
    )


def note_made(build_dir: Path, path: Path) -> None:
    """Record a directory the build made outside TMP_DIR (NAME.d), for a later cleanup."""
    note = note_path(build_dir)
    data = _read(note)
    if data is not None:
        data["made"] = [*data.get("made", []), str(path)]
        _write(note, data)


def release(build_dir: Path) -> None:
    """The build is over (whatever its end): its note goes after its directory."""
    note_path(build_dir).unlink(missing_ok=True)


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class DeadBuild:
    build_dir: Path
    note: Path
    data: dict[str, Any]


def find_dead(tmp_dir: Path) -> list[DeadBuild]:
    """The builds under ``tmp_dir`` whose process is gone."""
    out = []
    for note in sorted(tmp_dir.glob("dib_build.*" + SUFFIX)):
        data = _read(note)
        if data is None:
            continue
        pid, start = data.get("pid"), data.get("start")
        if isinstance(pid, int) and start is not None and start_time(pid) == start:
            continue  # alive: not ours to touch
        out.append(DeadBuild(Path(data.get("build_dir") or note.with_suffix("")), note, data))
    return out


def clean_dead(tmp_dir: Path) -> list[Path]:
    """Remove what dead builds under ``tmp_dir`` left; returns their build directories.

    Every failure is logged and the rest still tried; nothing here raises."""
    cleaned = []
    for dead in find_dead(tmp_dir):
        LOG.warning(
            "cleaning up after a build that died (pid %s): %s", dead.data.get("pid"), dead.build_dir
        )
        try:
            _clean_one(dead)
            cleaned.append(dead.build_dir)
        except Exception as e:  # noqa: BLE001 - one bad leftover must not stop the rest
            LOG.error("could not clean up %s: %s", dead.build_dir, e)
    return cleaned


def _clean_one(dead: DeadBuild) -> None:
    d = dead.build_dir
    if d.exists():
        mounts.kill_processes_in(d)
        # the chroot's mounts (not in the journal) sit on the image's: all go first,
        # deepest first; the build tmpfs itself (d) last
        _unmount_all(d, keep=os.path.realpath(d))
        journal_file = d / "states" / "block-device" / "state.json"
        if journal_file.exists():
            from dibpy.blockdev.registry import plugins
            from dibpy.blockdev.state import Journal

            plugins()  # the plugins register how their resources are released
            Journal.load(journal_file).release_all(strict=False)
        for dev in loopdev.loops_backed_under(d):
            try:
                loopdev.detach_loop(dev)
            except DibpyError as e:
                LOG.error("cleanup: %s", e)
        _unmount_all(d)
    pid = dead.data.get("pid")
    for out in dead.data.get("outputs", []):
        o = Path(out)
        for left in (o.with_name(f".{o.name}.partial-{pid}"), Path(f"{o}.md5.tmp")):
            left.unlink(missing_ok=True)
        Path(f"{o}.sha256.tmp").unlink(missing_ok=True)
    for made in dead.data.get("made", []):
        shutil.rmtree(made, ignore_errors=True)
    if d.exists() and not mounts.mounts_under(d):
        shutil.rmtree(d, ignore_errors=True)
    if not d.exists():
        dead.note.unlink(missing_ok=True)


def _unmount_all(d: Path, keep: str = "") -> None:
    for mp in mounts.mounts_under(d):
        if mp == keep:
            continue
        try:
            mounts.umount(Path(mp), mp)
        except Exception as e:  # noqa: BLE001
            LOG.error("cleanup: %s", e)
