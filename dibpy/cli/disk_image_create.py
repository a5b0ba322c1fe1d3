"""disk-image-create / ramdisk-image-create (pending the build-pipeline issue)."""

from __future__ import annotations

from collections.abc import Sequence

from dibpy.cli import not_yet


def main(argv: Sequence[str] | None = None) -> int:
    return not_yet("disk-image-create", "the build pipeline (issue 4)")(argv)


def ramdisk_main(argv: Sequence[str] | None = None) -> int:
    return not_yet("ramdisk-image-create", "ramdisk builds (issue 5)")(argv)
