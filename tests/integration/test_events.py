"""The JSON event stream of real builds (--progress=json) on the pipeline's tiny OS:
every line validates against dibpy/schemas/events.json, and the sequence is a build's."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import REPO, chroot_works

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]
SCHEMA = json.loads((REPO / "dibpy" / "schemas" / "events.json").read_text())
#: the order a build runs its phases in (a phase may be missing: no hooks, or cached)
PHASE_ORDER = [
    "root.d",
    "extra-data.d",
    "pre-install.d",
    "install.d",
    "post-install.d",
    "post-root.d",
    "block-device.d",
    "pre-finalise.d",
    "finalise.d",
    "cleanup.d",
]


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIB_", "DIBPY_"))}
    env.update(
        ELEMENTS_PATH=str(FIXTURES),
        TMP_DIR=str(tmp_path / "tmp"),
        PROBE_OUT=str(tmp_path / "probe"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
    )
    env.update(extra)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return env


def build(
    tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """A real build with the event stream in a file; its events, each schema-checked."""
    events_file = tmp_path / "events.jsonl"
    r = subprocess.run(
        [*DIC, "-n", "--progress=json", "--progress-file", str(events_file), *args],
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return r, validated(events_file.read_text())


def validated(text: str) -> list[dict[str, Any]]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        event = json.loads(line)
        errors = [e.message for e in validator.iter_errors(event)]
        assert not errors, f"line {n}: {line}: {errors}"
        out.append(event)
    return out


def check_sequence(events: list[dict[str, Any]]) -> list[str]:
    """Start first, end last, time never goes back, phases in build order and each hook
    inside its phase; returns the phases seen."""
    assert events[0]["event"] == "build-start"
    assert events[-1]["event"] == "build-end"
    assert [e["event"] for e in events].count("build-start") == 1
    assert [e["event"] for e in events].count("build-end") == 1
    times = [e["time"] for e in events]
    assert times == sorted(times)
    phases: list[str] = []
    current: str | None = None
    hook: str | None = None
    for e in events[1:-1]:
        kind = e["event"]
        if kind == "phase-start":
            assert current is None, f"{e['phase']} started inside {current}"
            current = e["phase"]
            phases.append(current)
        elif kind == "phase-end":
            assert e["phase"] == current and hook is None
            current = None
        elif kind == "hook-start":
            assert e["phase"] == current and hook is None
            hook = e["hook"]
        elif kind == "hook-end":
            assert e["phase"] == current and e["hook"] == hook
            hook = None
    assert current is None
    known = [p for p in phases if p in PHASE_ORDER]
    # cleanup.d may run once per finalised target; otherwise each phase once, in order
    firsts = list(dict.fromkeys(known))
    assert firsts == sorted(firsts, key=PHASE_ORDER.index), phases
    return phases


def test_a_real_build_streams_valid_events_in_order(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "out" / "tiny"
    r, events = build(
        tmp_path, "-o", str(out), "-t", "raw,qcow2", "tiny-os", "probe", "block-device-mbr"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    phases = check_sequence(events)
    for p in ("root.d", "install.d", "finalise.d", "cleanup.d"):
        assert p in phases
    start, end = events[0], events[-1]
    assert start["elements"] == ["tiny-os", "probe", "block-device-mbr"]
    assert end["result"] == "ok" and "error" not in end
    # hooks report status and the element they come from
    hooks = [e for e in events if e["event"] == "hook-end"]
    assert hooks and all(h["status"] == "ok" for h in hooks)
    assert any(h.get("element") == "probe" and h["phase"] == "install.d" for h in hooks)
    # the tree cache was asked at each checkpoint (a first build misses them all)
    caches = [e for e in events if e["event"] == "cache"]
    assert caches and all(c["result"] in ("miss", "off") for c in caches), caches
    if caches[0]["result"] == "off":
        assert len(caches) == 1
    else:
        assert all(c["after"] for c in caches)
    # every output file, with its real size and checksum
    written = {e["path"]: e for e in events if e["event"] == "output"}
    for name, fmt in (("tiny.raw", "raw"), ("tiny.qcow2", "qcow2")):
        f = out.with_name(name)
        e = written[str(f)]
        assert e["type"] == fmt and e["size"] == f.stat().st_size
        assert e["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert sorted(end["outputs"]) == sorted(written)

    if caches[0]["result"] == "miss":
        # the same build again reuses the tree: a hit, and no tree phase runs
        r, events = build(
            tmp_path, "-o", str(out), "-t", "raw", "tiny-os", "probe", "block-device-mbr"
        )
        assert r.returncode == 0, r.stderr[-3000:]
        phases = check_sequence(events)
        again = [e for e in events if e["event"] == "cache"]
        assert [c["after"] for c in again] == [c["after"] for c in caches]
        assert all(c["result"] == "hit" for c in again), again
        assert "root.d" not in phases and "finalise.d" in phases


def test_a_failing_build_ends_with_its_error(tmp_path: Path, no_leaks: None) -> None:
    r, events = build(tmp_path, "-o", str(tmp_path / "bad"), "tiny-os", "failing", "no-final-image")
    assert r.returncode != 0
    check_sequence(events)
    failed = [e for e in events if e["event"] == "hook-end" and e["status"] == "error"]
    assert len(failed) == 1 and failed[0]["element"] == "failing" and failed[0]["error"]
    phase_ends = [e for e in events if e["event"] == "phase-end"]
    assert phase_ends[-1]["status"] == "error" and phase_ends[-1]["phase"] == "install.d"
    end = events[-1]
    assert end["result"] == "error" and "failing" in end["error"]
    # the event says what the command printed
    assert end["error"].splitlines()[0] in r.stderr


def test_bad_options_still_give_a_start_and_an_end(tmp_path: Path) -> None:
    r, events = build(tmp_path, "-o", str(tmp_path / "x"), "--image-size", "huge", "tiny-os")
    assert r.returncode != 0
    assert [e["event"] for e in events] == ["build-start", "build-end"]
    assert events[-1]["result"] == "error" and "--image-size" in events[-1]["error"]


def test_the_environment_variable_streams_to_stderr(tmp_path: Path, no_leaks: None) -> None:
    r = subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "t"), "tiny-os", "probe", "no-final-image"],
        env=_env(tmp_path, DIBPY_PROGRESS="json"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    # the event lines are the ones that start with "{", between the log's lines
    lines = "\n".join(ln for ln in r.stderr.splitlines() if ln.startswith("{"))
    events = validated(lines)
    check_sequence(events)
    assert events[-1]["result"] == "ok"
