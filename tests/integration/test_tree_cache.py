"""The installed-tree cache: an unchanged build reuses its tree; any input that shapes the
tree (a hook, a variable, a package) forces a rebuild, and nothing later in the build does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]


@pytest.fixture
def elements(tmp_path: Path) -> Path:
    if chroot_works():
        pytest.skip(chroot_works() or "")
    dest = tmp_path / "elements"
    shutil.copytree(FIXTURES, dest, symlinks=True)
    return dest


def build(tmp_path: Path, elements: Path, name: str, *args: str, **env: str) -> dict[str, object]:
    import os

    e = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    e.update(
        ELEMENTS_PATH=str(elements), TMP_DIR=str(tmp_path), DIB_IMAGE_CACHE=str(tmp_path / "cache")
    )
    e.update(env)
    out = tmp_path / "out" / name
    r = subprocess.run(
        [*DIC, "-n", "-o", str(out), "-t", "raw", *args, "tiny-os", "probe", "block-device-mbr"],
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out.with_name(name + ".d") / "dibpy-build.json").read_text())
    tc = record["tree_cache"]
    assert isinstance(tc, dict)
    return tc


def test_reuse_and_invalidation(tmp_path: Path, elements: Path, no_leaks: None) -> None:
    first = build(tmp_path, elements, "a")
    assert first["reused"] is False
    again = build(tmp_path, elements, "b")
    assert again["reused"] is True and again["tree_key"] == first["tree_key"]
    assert isinstance(again["age_seconds"], int) and again["age_seconds"] >= 0

    # a hook that runs before the tree is cached: rebuild
    hook = elements / "probe" / "install.d" / "50-probe-install"
    hook.write_text(hook.read_text() + "\n# changed\n")
    changed_hook = build(tmp_path, elements, "c")
    assert changed_hook["reused"] is False and changed_hook["tree_key"] != first["tree_key"]

    # a variable: rebuild; the same variable again: reuse
    var = build(tmp_path, elements, "d", DIB_PROBE_SETTING="1")
    assert var["reused"] is False and var["tree_key"] != changed_hook["tree_key"]
    assert build(tmp_path, elements, "e", DIB_PROBE_SETTING="1")["reused"] is True

    # one more package: rebuild
    pkg = build(tmp_path, elements, "f", "-p", "extra-package")
    assert pkg["reused"] is False

    # a finalise.d hook only runs after the tree is cached: no rebuild of the tree
    fin = elements / "probe" / "finalise.d" / "50-probe-finalise"
    fin.write_text(fin.read_text() + "\n# changed\n")
    late = build(tmp_path, elements, "g")
    assert late["reused"] is True and late["tree_key"] == changed_hook["tree_key"]


def test_cache_bounded_and_switchable(tmp_path: Path, elements: Path, no_leaks: None) -> None:
    assert build(tmp_path, elements, "a")["reused"] is False
    # too old for the allowed age: rebuilt
    assert build(tmp_path, elements, "b", DIB_TREE_CACHE_MAX_AGE="0")["reused"] is False
    # --no-cache: not reused, and says so
    off = build(tmp_path, elements, "c", "--no-cache")
    assert off["reused"] is False and off["enabled"] is False
    assert build(tmp_path, elements, "d")["reused"] is True


def test_bad_max_age_is_a_clear_error(tmp_path: Path, elements: Path) -> None:
    import os

    e = dict(
        os.environ,
        ELEMENTS_PATH=str(elements),
        TMP_DIR=str(tmp_path),
        DIB_TREE_CACHE_MAX_AGE="a while",
    )
    r = subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "x"), "tiny-os"], env=e, capture_output=True, text=True
    )
    assert (
        r.returncode != 0 and "DIB_TREE_CACHE_MAX_AGE" in r.stderr and "Traceback" not in r.stderr
    )


def test_a_new_file_behind_a_variable_is_a_new_input(
    tmp_path: Path, elements: Path, no_leaks: None
) -> None:
    import os

    local = tmp_path / "local-image.qcow2"
    local.write_bytes(b"first")
    assert build(tmp_path, elements, "a", DIB_LOCAL_IMAGE=str(local))["reused"] is False
    assert build(tmp_path, elements, "b", DIB_LOCAL_IMAGE=str(local))["reused"] is True
    local.write_bytes(b"second, longer")
    os.utime(local, ns=(1, 1))
    assert build(tmp_path, elements, "c", DIB_LOCAL_IMAGE=str(local))["reused"] is False
