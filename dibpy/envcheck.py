"""Misspelt build variables: a ``DIB_*`` variable nothing of this build reads.

A misspelt ``DIB_RELEASE`` (one letter short) would build the default release without a
word.  Before anything runs, every ``DIB_*`` variable in the environment is looked up
in the text of the build's elements (every file of each resolved element) and of
dibpy itself (its code and ``$_LIB``): a variable whose name appears nowhere is named
in a warning, with the closest name that does appear.  A name written as a prefix
(``DIB_REPOLOCATION_$name``, ``f"DIB_QCOW2_{key}"``) covers every variable it starts.

Names an element declares in its ``parameters.yaml`` count as read too (an element
that reads a variable through a computed name can declare it there).  The warnings
become errors with ``--strict`` (``DIB_STRICT=1``): see ``dibpy.build.plan``.

This reads names, not code paths: a name that appears in a comment counts as read.  It
can miss a misspelling that happens to be another real variable, never the reverse.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from dibpy.errors import did_you_mean

_NAME = re.compile(r"DIB_[A-Za-z0-9_]*")
#: read by diskimage-builder's own tooling around the build, not by elements or dibpy:
#: set by users of both, never worth a warning
_ALWAYS_KNOWN = frozenset({"DIB_DEBUG_TRACE", "DIB_ENV", "DIB_ARGS"})
_MAX_FILE = 1024 * 1024


def _names_in(files: Iterable[Path]) -> set[str]:
    found: set[str] = set()
    for f in files:
        try:
            if not f.is_file() or f.stat().st_size > _MAX_FILE:
                continue
            text = f.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        found.update(_NAME.findall(text))
    return found


def _files_under(root: Path) -> Iterable[Path]:
    return (p for p in root.rglob("*") if "__pycache__" not in p.parts)


@functools.cache
def _dibpy_names() -> frozenset[str]:
    return frozenset(_names_in(_files_under(Path(__file__).resolve().parent)))


def dibpy_names() -> frozenset[str]:
    """Every DIB_* name dibpy itself mentions (its code, ``$_LIB``) or always accepts."""
    return _dibpy_names() | _ALWAYS_KNOWN


def known_names(element_dirs: Iterable[Path], declared: Iterable[str] = ()) -> set[str]:
    """Every DIB_* name the build's elements and dibpy mention, and those declared."""
    names = set(dibpy_names()) | set(declared)
    for d in element_dirs:
        names |= _names_in(_files_under(d))
    return names


def unread_variables(
    environ: Mapping[str, str], element_dirs: Iterable[Path], declared: Iterable[str] = ()
) -> list[str]:
    """One warning per DIB_* variable of ``environ`` that no element nor dibpy reads
    (``declared``: the names the build's elements declare in parameters.yaml)."""
    names = known_names(element_dirs, declared)
    exact = {n for n in names if not n.endswith("_")}
    prefixes = tuple(n for n in names if n.endswith("_") and len(n) > len("DIB_"))
    warnings = []
    for var in sorted(environ):
        if not var.startswith("DIB_") or var in exact or var.startswith(prefixes):
            continue
        near = did_you_mean(var, exact, n=1, cutoff=0.8, quote=False)
        hint = f"; {near}" if near else ""
        warnings.append(f"{var}: not read by any element of this build nor by dibpy{hint}")
    return warnings
