"""dibpy.mounts against the real kernel: mounts a hook left under a directory whose
name has spaces are found in /proc/self/mountinfo and unmounted deepest first."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from dibpy import mounts
from tests.conftest import mounts_under


def test_left_behind_mounts_with_spaces_are_unmounted_deepest_first(tmp_path: Path) -> None:
    root = tmp_path / "build root"
    outer, inner = root / "a dir", root / "a dir" / "in\tner"
    try:
        with contextlib.ExitStack() as stack:
            mounts.mount(["-t", "tmpfs", "tmpfs"], root, stack, "the build tmpfs")
            # what a hook does: plain mount(8), nothing on our stack
            for d in (outer, inner):
                d.mkdir(parents=True)
                subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(d)], check=True)
            assert mounts.mounts_under(root) == [str(inner), str(outer), str(root)]
            assert mounts.is_mounted(inner) and mounts.has_mounts_below(root)
            done = mounts.unmount_left_behind(root, "the test tree")
            assert done == [str(inner), str(outer)]
            assert mounts.mounts_under(root) == [str(root)], "the owner's mount stays"
        assert not mounts.is_mounted(root)
    finally:
        for d in (inner, outer, root):
            subprocess.run(["umount", str(d)], check=False, capture_output=True)
    assert not mounts_under(tmp_path)
