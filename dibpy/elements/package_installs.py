"""Checking every element's ``package-installs.yaml`` while the build is planned.

The package-installs element reads these files in its extra-data.d hook, after root.d
has run for minutes; a mistake found there is late and reported from inside a hook.
This checks the same format (the element's README) before anything runs, and names the
file and the package.  Conditions that depend on the build's environment (``when``'s
variables, ``arch``) are left to the hook.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dibpy.elements.model import Element
from dibpy.errors import ElementError

KEYS = frozenset(
    {"phase", "uninstall", "build-only", "installtype", "arch", "not-arch", "dib_python_version", "when"}
)
PHASES = ("pre-install.d", "install.d", "post-install.d")


def problems(elements: Iterable[Element]) -> list[str]:
    """Every problem in the elements' package-installs files, each naming its file."""
    out: list[str] = []
    for el in elements:
        path = el.package_installs_file
        if path is None:
            continue
        try:
            data = el.package_installs()
        except ElementError as e:
            out.append(e.message)
            continue
        for pkg, spec in data.items():
            out += [f"{path}: package {pkg}: {p}" for p in _spec_problems(spec)]
    return out


def _spec_problems(spec: Any) -> list[str]:
    if not spec:
        return []  # nothing, "", [] or {}: the package with no options, as diskimage-builder
    if isinstance(spec, dict):
        items = [spec]
    elif isinstance(spec, list) and all(isinstance(i, dict) for i in spec):
        items = spec
    else:
        return [
            f"{type(spec).__name__} {spec!r} is not an entry "
            "(want nothing, a mapping of options or a list of them)"
        ]
    out = []
    for item in items:
        unknown = sorted(str(k) for k in set(item) - KEYS)
        if unknown:
            out.append(f"unknown option {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
        phase = item.get("phase", "install.d")
        if phase not in PHASES:
            out.append(f"phase {phase!r} is not one of {', '.join(PHASES)}")
        if "arch" in item and "not-arch" in item:
            out.append("'arch' and 'not-arch' cannot both be given")
        when = item.get("when")
        for cond in when if isinstance(when, list) else ([] if when is None else [when]):
            var = str(cond).split("!=")[0].split("=")[0].strip()
            if "=" not in str(cond) or not var:
                out.append(f"'when: {cond}' must be VAR=value or VAR!=value")
    return out
