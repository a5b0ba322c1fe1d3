"""dibpy cleanup on the notes builds leave beside their directories: a dead build's partial
outputs, NAME.d and directory go; a live build's are not touched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from dibpy import recovery
from dibpy.cli.main import main as dibpy_main


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_cleanup_removes_a_dead_builds_leftovers_and_spares_a_live_one(
    tmp_path: Path, capsys: object
) -> None:
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    out.mkdir()
    dead_dir = tmp / "dib_build.dead"
    (dead_dir / "hooks").mkdir(parents=True)
    pid = _dead_pid()
    (out / f".img.raw.partial-{pid}").write_text("half an image")
    (out / "img.d").mkdir()
    (out / "keep.raw").write_text("someone else's")
    note = {
        "pid": pid,
        "start": "1",
        "build_dir": str(dead_dir),
        "outputs": [str(out / "img.raw")],
        "made": [str(out / "img.d")],
    }
    recovery.note_path(dead_dir).write_text(json.dumps(note))
    live_dir = tmp / "dib_build.live"
    live_dir.mkdir()
    recovery.claim(live_dir, [out / "live.raw"])
    (out / f".live.raw.partial-{os.getpid()}").write_text("being written")

    assert dibpy_main(["cleanup", "--tmp-dir", str(tmp)]) == 0
    assert sorted(p.name for p in tmp.iterdir()) == ["dib_build.live", "dib_build.live.owner"]
    assert sorted(p.name for p in out.iterdir()) == [f".live.raw.partial-{os.getpid()}", "keep.raw"]
    recovery.release(live_dir)


def test_a_reused_pid_is_not_a_live_build(tmp_path: Path) -> None:
    d = tmp_path / "dib_build.x"
    d.mkdir()
    # our own pid, but another start time: the build that wrote it is gone
    note = {"pid": os.getpid(), "start": "0", "build_dir": str(d), "outputs": [], "made": []}
    recovery.note_path(d).write_text(json.dumps(note))
    assert [b.build_dir for b in recovery.find_dead(tmp_path)] == [d]


def test_cleanup_of_a_missing_tmp_dir_is_one_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert dibpy_main(["cleanup", "--tmp-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and str(tmp_path / "nope") in err
