"""Where elements come from: ELEMENTS_PATH, element packages, and the built-in library.

Search order is like ``$PATH``: ``ELEMENTS_PATH`` entries first (an earlier entry wins),
then directories declared by installed packages in the ``dibpy.elements`` entry-point
group (in entry-point name order), then the library shipped with dibpy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from dibpy.elements.model import Element
from dibpy.errors import ConfigError

LOG = logging.getLogger("dibpy")

ENTRY_POINT_GROUP = "dibpy.elements"


def builtin_elements_dir() -> Path:
    """The element library shipped with dibpy (a checkout's elements/, or the installed copy)."""
    pkg = Path(__file__).resolve().parent.parent
    for candidate in (pkg / "library", pkg.parent / "elements"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        "dibpy's own element library is missing",
        hint=f"expected {pkg / 'library'} or {pkg.parent / 'elements'}; reinstall dibpy",
    )


def _entry_point_target(obj: object, name: str) -> Path:
    if callable(obj) and not isinstance(obj, type):
        obj = obj()
    if isinstance(obj, ModuleType):
        base = Path(obj.__file__ or "").parent
        return base / "elements" if (base / "elements").is_dir() else base
    if isinstance(obj, str | os.PathLike):
        return Path(obj)
    raise ConfigError(
        f"element package entry point {name!r} in group {ENTRY_POINT_GROUP} "
        f"gives {type(obj).__name__}, not a directory",
        hint="point it at a module, a path string, or a function returning a path",
    )


def package_elements_dirs() -> list[tuple[str, Path]]:
    """Element directories declared by installed packages (entry points), loaded strictly."""
    from stevedore import ExtensionManager

    def _fail(_manager: object, ep: object, exc: BaseException) -> None:
        raise ConfigError(
            f"element package entry point {getattr(ep, 'name', ep)!r} failed to load: {exc}",
            hint=f"fix or uninstall the package that declares it in {ENTRY_POINT_GROUP}",
        )

    mgr: ExtensionManager[Any] = ExtensionManager(
        ENTRY_POINT_GROUP,
        invoke_on_load=False,
        on_load_failure_callback=_fail,
    )
    out: list[tuple[str, Path]] = []
    for ext in sorted(mgr.extensions, key=lambda e: e.name):
        path = _entry_point_target(ext.plugin, ext.name)
        if not path.is_dir():
            raise ConfigError(
                f"element package {ext.name!r} points at {path}, which is not a directory",
                hint=f"check its {ENTRY_POINT_GROUP} entry point",
            )
        out.append((f"package {ext.name}", path))
    return out


@dataclass
class ElementLibrary:
    """All elements visible to a build, by name (the first definition of a name wins)."""

    search_path: list[tuple[str, Path]]
    elements: dict[str, Element] = field(default_factory=dict)
    #: names defined again later in the search path, which the earlier entry overrides
    shadowed: dict[str, list[Path]] = field(default_factory=dict)

    @classmethod
    def from_dirs(cls, dirs: Iterable[tuple[str, Path]]) -> ElementLibrary:
        lib = cls(search_path=list(dirs))
        for origin, d in lib.search_path:
            for child in sorted(d.iterdir()):
                if not child.is_dir() or child.name.startswith("."):
                    continue
                if child.name in lib.elements:
                    lib.shadowed.setdefault(child.name, []).append(child)
                    continue
                lib.elements[child.name] = Element(child.name, child, origin)
        return lib

    def __contains__(self, name: object) -> bool:
        return name in self.elements

    def __getitem__(self, name: str) -> Element:
        return self.elements[name]

    @property
    def elements_path(self) -> str:
        """The colon-separated ELEMENTS_PATH a hook should see (all directories searched)."""
        return ":".join(str(p) for _, p in self.search_path)


def split_elements_path(value: str) -> list[Path]:
    return [Path(p) for p in value.split(":") if p.strip()]


def find_library(
    environ: Mapping[str, str] | None = None,
    extra_dirs: Iterable[Path] = (),
    include_packages: bool = True,
    include_builtin: bool = True,
) -> ElementLibrary:
    """Build the element library for a build from ELEMENTS_PATH and the installed packages.

    A missing ELEMENTS_PATH entry is an error naming it (diskimage-builder silently skips it).
    """
    env = os.environ if environ is None else environ
    dirs: list[tuple[str, Path]] = [("argument", Path(p)) for p in extra_dirs]
    missing = []
    for p in split_elements_path(env.get("ELEMENTS_PATH", "")):
        if p.is_dir():
            dirs.append(("ELEMENTS_PATH", p.resolve()))
        else:
            missing.append(str(p))
    if missing:
        raise ConfigError(
            f"ELEMENTS_PATH entry is not a directory: {', '.join(missing)}",
            hint="ELEMENTS_PATH is a colon-separated list of directories holding elements",
        )
    if include_packages:
        dirs.extend(package_elements_dirs())
    if include_builtin:
        dirs.append(("built-in", builtin_elements_dir()))
    # the same directory twice (ELEMENTS_PATH naming the built-in dir) is searched once
    seen: set[Path] = set()
    unique = []
    for origin, d in dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((origin, d))
    return ElementLibrary.from_dirs(unique)
