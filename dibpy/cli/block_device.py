"""dib-block-device (pending the block-device issue)."""

from __future__ import annotations

from collections.abc import Sequence

from dibpy.cli import not_yet


def main(argv: Sequence[str] | None = None) -> int:
    return not_yet("dib-block-device", "the block-device layer (issue 3)")(argv)
