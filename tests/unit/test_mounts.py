"""The mount table reader: /proc/self/mountinfo lines, octal escapes, and the order in
which mounts under a directory are unmounted."""

from __future__ import annotations

from pathlib import Path

from dibpy import mounts

# the kernel's format: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp/build rw shared:5 - tmpfs tmpfs rw
31 30 7:0 / /tmp/build/mnt rw - ext4 /dev/loop0 rw
32 31 7:1 / /tmp/build/mnt/boot rw - vfat /dev/loop1 rw
33 31 0:5 / /tmp/build/mnt/proc rw,nosuid master:2 - proc proc rw
34 30 0:26 / /tmp/build/my\\040dir rw - tmpfs my\\040src rw
35 34 0:27 / /tmp/build/my\\040dir/tab\\011and\\134back rw - tmpfs tmpfs rw
36 31 0:28 / /tmp/build/mnt rw - tmpfs tmpfs rw
40 22 0:29 / /tmp/buildother rw - tmpfs tmpfs rw
garbage line
"""


def test_unescape_octal() -> None:
    assert mounts.unescape("a\\040b\\011c\\012d\\134e") == "a b\tc\nd\\e"
    assert mounts.unescape("plain") == "plain"


def test_parse_fields_and_escapes() -> None:
    entries = mounts.parse_mountinfo(MOUNTINFO)
    assert len(entries) == 9, "the garbage line is skipped"
    root = entries[0]
    assert (root.mount_id, root.parent_id, root.mount_point, root.fstype, root.source) == (
        22,
        1,
        "/",
        "ext4",
        "/dev/sda1",
    )
    # optional fields (shared:N, master:N) of any number do not shift fstype and source
    assert entries[4].fstype == "proc" and entries[4].source == "proc"
    spaced = entries[5]
    assert spaced.mount_point == "/tmp/build/my dir" and spaced.source == "my src"
    assert entries[6].mount_point == "/tmp/build/my dir/tab\tand\\back"


def test_under_is_deepest_first_and_stays_under() -> None:
    entries = mounts.parse_mountinfo(MOUNTINFO)
    got = mounts.under(entries, "/tmp/build")
    assert "/tmp/buildother" not in got, "a sibling with the same prefix is not below"
    assert got[-1] == "/tmp/build", "the base itself goes last"
    depth = [m.count("/") for m in got]
    assert depth == sorted(depth, reverse=True)
    # every mount comes before the one it is mounted on
    pos = {m: i for i, m in reversed(list(enumerate(got)))}
    assert pos["/tmp/build/mnt/boot"] < pos["/tmp/build/mnt"]
    assert pos["/tmp/build/my dir/tab\tand\\back"] < pos["/tmp/build/my dir"]
    # a mount stacked on another at the same point is listed (and unmounted) before it
    assert got.count("/tmp/build/mnt") == 2


def test_under_a_path_with_a_space() -> None:
    entries = mounts.parse_mountinfo(MOUNTINFO)
    assert mounts.under(entries, "/tmp/build/my dir") == [
        "/tmp/build/my dir/tab\tand\\back",
        "/tmp/build/my dir",
    ]
    assert mounts.under(entries, "/tmp/build/my") == []


def test_the_live_table_has_the_root() -> None:
    # every Linux process sees a root mount; realpath makes "/." and "/" the same
    assert mounts.is_mounted(Path("/"))
    assert mounts.mounts_under("/")[-1] == "/"
    assert mounts.mount_table()[0].mount_id > 0


def test_backoff_stops_after_tries(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    slept: list[float] = []
    monkeypatch.setattr(mounts.time, "sleep", slept.append)
    assert list(mounts.backoff(None, tries=5, first=0.5)) == [0, 1, 2, 3, 4]
    assert slept == [0.5, 1.0, 2.0, 2.0]
