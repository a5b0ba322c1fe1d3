"""dib-lint (being written)."""

from __future__ import annotations

from collections.abc import Sequence

from dibpy.cli import not_yet


def main(argv: Sequence[str] | None = None) -> int:
    return not_yet("dib-lint", "element checks")(argv)
