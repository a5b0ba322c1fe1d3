"""diskimage-builder YAML front-end (pending the build-pipeline issue)."""

from __future__ import annotations

from collections.abc import Sequence

from dibpy.cli import not_yet


def main(argv: Sequence[str] | None = None) -> int:
    return not_yet("diskimage-builder", "YAML build files (needs the build pipeline, issue 4)")(
        argv
    )
