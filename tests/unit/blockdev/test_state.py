"""The journal: written as resources are made, released newest first, idempotently."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dibpy.blockdev import resources
from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.plugin import CreateContext
from dibpy.blockdev.state import Journal
from dibpy.errors import DibpyError

released: list[Any] = []


@resources.releaser("test-thing")
def _release(entry: dict[str, Any]) -> None:
    if entry.get("fail"):
        raise DibpyError(f"cannot release {entry['what']}")
    released.append(entry["what"])


@pytest.fixture(autouse=True)
def _reset() -> None:
    released.clear()


def test_entries_are_on_disk_at_once(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    j = Journal(path)
    j.add("test-thing", "n1", what="a")
    assert json.loads(path.read_text())["resources"][0]["what"] == "a"
    j.set_values("n1", device="/dev/x")
    again = Journal.load(path)
    assert again.values("n1") == {"device": "/dev/x"}
    assert [e["what"] for e in again.live()] == ["a"]


def test_release_all_newest_first_and_idempotent(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.json")
    for w in "abc":
        j.add("test-thing", "n", what=w)
    assert j.release_all(strict=True) == []
    assert released == ["c", "b", "a"]
    j.release_all(strict=True)
    assert released == ["c", "b", "a"]
    assert Journal.load(tmp_path / "s.json").live() == []


def test_a_later_process_releases(tmp_path: Path) -> None:
    Journal(tmp_path / "s.json").add("test-thing", "n", what="x")
    Journal.load(tmp_path / "s.json").release_all(strict=True)
    assert released == ["x"]


def test_cleanup_failure_is_logged_not_raised_over_the_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path / "s.json")
    params = BlockDeviceParams(image_dir=tmp_path, mount_base=tmp_path, build_dir=tmp_path)
    with pytest.raises(RuntimeError, match="the cause"), ExitStack() as stack:
        ctx = CreateContext(j, stack, {}, params)
        ctx.acquire("test-thing", "n", what="ok")
        ctx.acquire("test-thing", "n", what="stuck", fail=True)
        raise RuntimeError("the cause")
    assert released == ["ok"]
    assert "could not release test-thing" in caplog.text
    caplog.set_level(logging.ERROR)


def test_strict_release_raises(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.json")
    j.add("test-thing", "n", what="a")
    j.add("test-thing", "n", what="b", fail=True)
    with pytest.raises(DibpyError, match="cannot release b"):
        j.release_all(strict=True)
    assert released == []
    assert len(j.release_all(strict=False)) == 1
    assert released == ["a"]


def test_unknown_kind() -> None:
    with pytest.raises(DibpyError, match="do not know how to release"):
        resources.release({"kind": "nope"})
