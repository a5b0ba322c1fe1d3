"""Sizes as written in block-device configs.

``KiB``..``TiB`` are powers of 1024; ``KB``..``TB`` and the bare ``K``..``T`` are powers
of 1000 (as diskimage-builder reads them).  A plain number is bytes.  ``N%`` is relative
and only meaningful where the caller supplies what it is a percentage of.
"""

from __future__ import annotations

import re

from dibpy.errors import ConfigError

UNITS: dict[str, int] = {
    "": 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*%\s*$")


def parse_size(value: object) -> int:
    """Bytes for an absolute size (int, or a string such as ``"8MiB"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{value} is negative")
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        raise ConfigError(f"{value!r} is not a size")
    m = _SIZE.match(value)
    if not m:
        raise ConfigError(
            f"{value!r} is not a size",
            hint="write a number with a unit: B, KiB, MiB, GiB, TiB (1024-based) or "
            "KB, MB, GB, TB, K, M, G, T (1000-based)",
        )
    number, unit = m.groups()
    if unit not in UNITS:
        close = [u for u in UNITS if u and u.lower() == unit.lower()]
        raise ConfigError(
            f"{value!r} has an unknown unit {unit!r}"
            + (f" (did you mean {close[0]!r}?)" if close else ""),
            hint="units are B, KiB, MiB, GiB, TiB, KB, MB, GB, TB, K, M, G, T",
        )
    return int(float(number) * UNITS[unit])


def is_percent(value: object) -> bool:
    return isinstance(value, str) and _PERCENT.match(value) is not None


def parse_rel_size(value: object, total: int) -> int:
    """Bytes for an absolute size or a percentage of ``total``."""
    if isinstance(value, str):
        m = _PERCENT.match(value)
        if m:
            pct = float(m.group(1))
            if pct <= 0 or pct > 100:
                raise ConfigError(f"{value!r} must be more than 0% and at most 100%")
            return int(total * pct / 100)
    return parse_size(value)


def human(n: int) -> str:
    """A short 1024-based rendering for messages."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}".replace(".0", "")
        size /= 1024
    return f"{n}B"  # pragma: no cover
