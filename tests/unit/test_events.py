"""The event emitter (dibpy.events): one valid JSON object per line, start first and end
last whatever happens in between."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dibpy import events
from dibpy.errors import ConfigError

VALIDATOR = jsonschema.Draft202012Validator(json.loads(events.SCHEMA.read_text()))


def lines(text: str) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in text.splitlines()]
    for e in out:
        VALIDATOR.validate(e)
    return out


def test_the_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(events.SCHEMA.read_text()))


def test_nothing_is_written_without_a_session(capsys: pytest.CaptureFixture[str]) -> None:
    assert not events.enabled()
    events.emit("phase-start", phase="root.d", in_chroot=False)
    assert capsys.readouterr() == ("", "")


def test_a_session_streams_one_object_a_line_and_closes_its_file(tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
    with events.session(str(target)) as sink:
        assert events.enabled()
        events.emit("phase-start", phase="install.d", in_chroot=True)
        events.emit("hook-start", phase="install.d", hook="50-x", element=None)
        events.emit("hook-end", phase="install.d", hook="50-x", seconds=0.5, status="ok")
        events.emit("phase-end", phase="install.d", seconds=0.6, status="ok")
        # flushed at once: a reader sees each event while the build runs
        assert len(target.read_text().splitlines()) == 4
    assert sink.stream.closed and not events.enabled()
    got = lines(target.read_text())
    assert [e["event"] for e in got] == ["phase-start", "hook-start", "hook-end", "phase-end"]
    # a None field is left out, not written as null
    assert "element" not in got[1]


def test_the_default_stream_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with events.session(None):
        events.emit("cache", cache="tree", result="off", reason="--no-cache")
    err = capsys.readouterr().err
    assert lines(err)[0]["result"] == "off"


def test_an_unwritable_progress_file_is_one_line(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match=r"--progress-file .*: cannot write it"),
        events.session(str(tmp_path / "no" / "such" / "dir" / "f")),
    ):
        pass


def test_build_events_ok_error_and_interrupted() -> None:
    buf = io.StringIO()
    events._sink = events.EventSink(buf)
    try:
        with events.build_events(["a", "b"], ["-o", "x", "a", "b"]) as end:
            end["outputs"] = [Path("/x.qcow2")]
        with pytest.raises(ConfigError), events.build_events(["a"], []):
            raise ConfigError("no elements given", hint="name some")
        with pytest.raises(KeyboardInterrupt), events.build_events(["a"], []):
            raise KeyboardInterrupt
        with pytest.raises(RuntimeError), events.build_events(["a"], []):
            raise RuntimeError("bug")
    finally:
        events._sink = None
    got = lines(buf.getvalue())
    assert [e["event"] for e in got] == ["build-start", "build-end"] * 4
    ok, err, intr, bug = got[1], got[3], got[5], got[7]
    assert ok["result"] == "ok" and ok["outputs"] == ["/x.qcow2"]
    assert err["result"] == "error" and err["error"] == "no elements given"
    assert err["hint"] == "name some" and err["exit_status"] == ConfigError.exit_code
    assert intr["result"] == "interrupted"
    assert bug["result"] == "error" and bug["error"] == "RuntimeError: bug"
    assert got[0]["elements"] == ["a", "b"] and got[0]["argv"][:2] == ["-o", "x"]


def test_output_written_reports_size_and_sha256(tmp_path: Path) -> None:
    f = tmp_path / "image.raw"
    f.write_bytes(b"x" * 3_000_000)
    events.output_written(f, "raw")  # no session: nothing read, nothing written
    buf = io.StringIO()
    events._sink = events.EventSink(buf)
    try:
        events.output_written(f, "raw")
    finally:
        events._sink = None
    (e,) = lines(buf.getvalue())
    assert e["size"] == 3_000_000 and e["type"] == "raw"
    assert e["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()


def test_events_from_many_threads_stay_whole_lines() -> None:
    buf = io.StringIO()
    events._sink = events.EventSink(buf)

    def work(n: int) -> None:
        for i in range(200):
            events.emit("hook-start", phase="install.d", hook=f"{n}-{i}-" + "x" * 200)

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        events._sink = None
    assert len(lines(buf.getvalue())) == 800


def test_a_reader_that_went_away_does_not_fail_the_build() -> None:
    buf = io.StringIO()
    buf.close()
    events.EventSink(buf).emit("cache", cache="tree", result="off")


def test_mode_from_option_and_environment() -> None:
    assert events.mode_from("json", {}) == "json"
    assert events.mode_from(None, {"DIBPY_PROGRESS": "json"}) == "json"
    assert events.mode_from(None, {"DIBPY_PROGRESS": "1"}) == "auto"
    assert events.mode_from("off", {"DIBPY_PROGRESS": "json"}) == "off"


def test_the_schema_rejects_what_is_not_an_event() -> None:
    bad = [
        {"event": "build-end", "time": 1.0, "result": "error", "seconds": 1},  # no error
        {"event": "phase-end", "time": 1.0, "phase": "install", "seconds": 1, "status": "ok"},
        {"event": "output", "time": 1.0, "path": "/x", "size": 1, "sha256": "nothex"},
        {"event": "mystery", "time": 1.0},
    ]
    for e in bad:
        assert list(VALIDATOR.iter_errors(e)), e


def test_progress_file_without_json_is_refused(tmp_path: Path) -> None:
    from dibpy.cli.disk_image_create import main

    rc = main(["--progress-file", str(tmp_path / "f"), "-o", str(tmp_path / "x"), "vm"])
    assert rc == ConfigError.exit_code
    assert not (tmp_path / "f").exists()
