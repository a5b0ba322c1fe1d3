"""The tree cache key covers every input: each one changed alone forces a rebuild whose tree
holds the change, the unchanged build still hits, and the miss says which input changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]

# a post-root.d hook (on the host, before the tree is cached) that reads a variable
# outside DIB_*, the file behind DIB_LOCAL_IMAGE and what a source repository put in the tree
INSTALL_HOOK = """#!/bin/bash
set -eu -o pipefail
{
  echo "probe_var=${PROBE_REMOVE_FIRMWARE:-}"
  if [ -n "${DIB_LOCAL_IMAGE:-}" ]; then echo "local=$(cat "$DIB_LOCAL_IMAGE")"; fi
  if [ -f "$TARGET_ROOT/opt/agent/VERSION" ]; then
    echo "agent=$(cat "$TARGET_ROOT/opt/agent/VERSION")"
  fi
} > "$TARGET_ROOT/var/log/cache-inputs"
"""


@pytest.fixture
def elements(tmp_path: Path) -> Path:
    if chroot_works():
        pytest.skip(chroot_works() or "")
    dest = tmp_path / "elements"
    shutil.copytree(FIXTURES, dest, symlinks=True)
    el = dest / "cache-inputs"
    (el / "post-root.d").mkdir(parents=True)
    (el / "README.rst").write_text("cache-inputs\n============\nTest element.\n")
    hook = el / "post-root.d" / "50-cache-inputs"
    hook.write_text(INSTALL_HOOK)
    hook.chmod(0o755)
    return dest


def build(
    tmp_path: Path, elements: Path, name: str, *extra: str, **env: str
) -> tuple[dict[str, object], str, str]:
    """Build a tar of the tree: (tree cache record, /var/log/cache-inputs, stderr)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DIB_", "PROBE_"))}
    e.update(
        ELEMENTS_PATH=str(elements), TMP_DIR=str(tmp_path), DIB_IMAGE_CACHE=str(tmp_path / "cache")
    )
    e.update(env)
    out = tmp_path / "out" / name
    r = subprocess.run(
        [*DIC, "-n", "-o", str(out), "-t", "tar", "tiny-os", "cache-inputs", *extra],
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out.with_name(name + ".d") / "dibpy-build.json").read_text())
    with tarfile.open(out.with_name(name + ".tar")) as tf:
        f = tf.extractfile("./var/log/cache-inputs")
        assert f is not None
        content = f.read().decode()
    tc = record["tree_cache"]
    assert isinstance(tc, dict)
    return tc, content, r.stderr


def test_a_variable_outside_dib_is_an_input(tmp_path: Path, elements: Path, no_leaks: None) -> None:
    first, tree, _ = build(tmp_path, elements, "a", PROBE_REMOVE_FIRMWARE="true")
    assert first["reused"] is False and "probe_var=true" in tree
    again, tree, _ = build(tmp_path, elements, "b", PROBE_REMOVE_FIRMWARE="true")
    assert again["reused"] is True and "probe_var=true" in tree
    changed, tree, log = build(tmp_path, elements, "c", PROBE_REMOVE_FIRMWARE="false")
    assert changed["reused"] is False and "probe_var=false" in tree
    assert changed["miss"] == ["variable PROBE_REMOVE_FIRMWARE changed"]
    assert "tree cache: miss after root.d: variable PROBE_REMOVE_FIRMWARE changed" in log
    # the value is hashed, never stored in the cache's metadata
    metas = [p.read_text() for p in (tmp_path / "cache" / "dibpy-trees").glob("*.json")]
    assert metas and not any('"false"' in m or '"true"' in m for m in metas)
    # a variable on the documented list cannot change the tree: still a hit
    term, tree, _ = build(
        tmp_path, elements, "d", PROBE_REMOVE_FIRMWARE="false", TERM="other-terminal"
    )
    assert term["reused"] is True and "probe_var=false" in tree
    # and a user can add to that list
    ignored, _, _ = build(
        tmp_path,
        elements,
        "e",
        PROBE_REMOVE_FIRMWARE="false",
        CI_JOB_ID="1234",
        DIB_TREE_CACHE_IGNORE_VARS="CI_JOB_ID",
    )
    assert ignored["reused"] is True


def test_same_size_same_mtime_base_image_with_other_content(
    tmp_path: Path, elements: Path, no_leaks: None
) -> None:
    local = tmp_path / "base.img"
    local.write_text("content-one")
    st = local.stat()
    first, tree, _ = build(tmp_path, elements, "a", DIB_LOCAL_IMAGE=str(local))
    assert first["reused"] is False and "local=content-one" in tree
    assert build(tmp_path, elements, "b", DIB_LOCAL_IMAGE=str(local))[0]["reused"] is True
    # same path, size and modification time (and inode): only the content differs
    with open(local, "r+") as f:
        f.write("content-two")
    os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert local.stat().st_size == st.st_size and local.stat().st_mtime_ns == st.st_mtime_ns
    changed, tree, _ = build(tmp_path, elements, "c", DIB_LOCAL_IMAGE=str(local))
    assert changed["reused"] is False and "local=content-two" in tree
    [reason] = changed["miss"]  # type: ignore[misc]
    assert reason.startswith("file DIB_LOCAL_IMAGE changed (")


def git(*args: str | Path) -> str:
    return subprocess.run(
        ["git", *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@localhost",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@localhost",
        },
    ).stdout.strip()


def test_a_new_commit_behind_a_moving_ref(tmp_path: Path, elements: Path, no_leaks: None) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "agent-repo"
    repo.mkdir()
    git("-C", repo, "init", "-q", "-b", "main")
    (repo / "VERSION").write_text("1\n")
    git("-C", repo, "add", "VERSION")
    git("-C", repo, "commit", "-q", "-m", "one")
    el = elements / "cache-inputs"
    (el / "element-deps").write_text("source-repositories\n")
    (el / "source-repository-agent").write_text("agent git /opt/agent https://invalid.test/x\n")
    env = {"DIB_REPOLOCATION_agent": str(repo), "DIB_REPOREF_agent": "main"}
    first, tree, _ = build(tmp_path, elements, "a", **env)
    assert first["reused"] is False and "agent=1" in tree
    assert build(tmp_path, elements, "b", **env)[0]["reused"] is True
    old = git("-C", repo, "rev-parse", "HEAD")
    (repo / "VERSION").write_text("2\n")
    git("-C", repo, "commit", "-q", "-am", "two")
    new = git("-C", repo, "rev-parse", "HEAD")
    changed, tree, log = build(tmp_path, elements, "c", **env)
    assert changed["reused"] is False and "agent=2" in tree
    why = f"source repository agent changed ({old[:12]} -> {new[:12]})"
    assert changed["miss"] == [why] and f"tree cache: miss after root.d: {why}" in log
