"""What dibpy reads from one element directory (the same files diskimage-builder reads)."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dibpy.elements import params as _params
from dibpy.errors import ElementError


@dataclass(frozen=True)
class PhaseSpec:
    """One phase of a disk-image build, as :data:`PHASE_TABLE` lists them."""

    name: str
    #: run in a chroot of the image (the others run on the host)
    in_chroot: bool
    #: "tree" (builds the installed tree), "image" (before the block device is made) or
    #: "finalise" (on the mounted image, or the tree of an image-less build)
    stage: str = "tree"
    #: the tree cache keeps the tree as it is after this phase (doc/building.md,
    #: "Checkpoints"); the phases since the previous checkpoint are what it skips
    checkpoint: bool = False


#: Every phase, in the order a disk-image build runs them: the one table ``Build`` runs
#: the tree phases from and the tree cache takes its checkpoints from.
PHASE_TABLE: tuple[PhaseSpec, ...] = (
    PhaseSpec("root.d", in_chroot=False, checkpoint=True),
    PhaseSpec("extra-data.d", in_chroot=False),
    PhaseSpec("pre-install.d", in_chroot=True, checkpoint=True),
    PhaseSpec("install.d", in_chroot=True, checkpoint=True),
    PhaseSpec("post-install.d", in_chroot=True, checkpoint=True),
    PhaseSpec("post-root.d", in_chroot=False, checkpoint=True),
    PhaseSpec("block-device.d", in_chroot=False, stage="image"),
    PhaseSpec("pre-finalise.d", in_chroot=False, stage="finalise"),
    PhaseSpec("finalise.d", in_chroot=True, stage="finalise"),
    PhaseSpec("cleanup.d", in_chroot=False, stage="finalise"),
)

#: Phase directories, in the order a disk-image build runs them.
PHASES: tuple[str, ...] = tuple(p.name for p in PHASE_TABLE)

#: Phases run inside the chroot (all others run on the host).
CHROOT_PHASES: frozenset[str] = frozenset(p.name for p in PHASE_TABLE if p.in_chroot)

#: ``-p`` packages are installed just before this phase, in its chroot
PACKAGES_PHASE = "post-install.d"

#: The phases that build the installed tree (root.d to post-root.d).
TREE_PHASES: tuple[PhaseSpec, ...] = tuple(p for p in PHASE_TABLE if p.stage == "tree")


def tree_segments() -> tuple[tuple[PhaseSpec, ...], ...]:
    """The tree phases cut at each checkpoint: ``((root.d), (extra-data.d, pre-install.d),
    (install.d), (post-install.d), (post-root.d))``; each segment ends with its checkpoint."""
    out: list[tuple[PhaseSpec, ...]] = []
    cur: list[PhaseSpec] = []
    for p in TREE_PHASES:
        cur.append(p)
        if p.checkpoint:
            out.append(tuple(cur))
            cur = []
    assert not cur, "the last tree phase must be a checkpoint"
    return tuple(out)


#: Ramdisk-only phase directories that diskimage-builder also recognises.
RAMDISK_PHASES: tuple[str, ...] = ("binary-deps.d", "init.d", "ramdisk-install.d", "udev.d")

_COMMENT = re.compile(r"#.*$")


def _read_name_set(path: Path, element: str) -> frozenset[str]:
    """A newline-separated set of names; blank lines and ``#`` comments ignored.

    A file that is there but cannot be read as one (a directory, say) is an error, never
    read as empty: the element would silently lose its dependencies."""
    if not path.exists() and not path.is_symlink():
        return frozenset()
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise ElementError(
            f"element {element}: {path} is {what}",
            hint=f"{path.name} must be a file with one element name per line",
        )
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise ElementError(f"element {element}: cannot read {path}: {e.strerror}") from None
    names = set()
    for line in text.splitlines():
        line = _COMMENT.sub("", line).strip()
        if line:
            names.add(line)
    return frozenset(names)


def _read_one_line(path: Path, element: str) -> str | None:
    """The one meaningful line of a metadata file (comments and blank lines ignored)."""
    lines = sorted(_read_name_set(path, element))
    if not lines:
        if path.is_file():
            raise ElementError(
                f"element {element}: {path.name} is empty",
                hint=f"{path} must hold one line",
            )
        return None
    if len(lines) > 1:
        raise ElementError(
            f"element {element}: {path.name} has {len(lines)} lines, not one",
            hint=f"put what {path.name} says on one line of {path}",
        )
    return lines[0]


@dataclass(frozen=True)
class Element:
    """One element directory.  Cheap to make: files are read on first use."""

    name: str
    path: Path
    #: where this element was found (an ELEMENTS_PATH entry, a package, built-in)
    origin: str = field(default="", compare=False)

    @functools.cached_property
    def depends(self) -> frozenset[str]:
        return _read_name_set(self.path / "element-deps", self.name)

    @functools.cached_property
    def provides(self) -> frozenset[str]:
        return _read_name_set(self.path / "element-provides", self.name)

    @functools.cached_property
    def conflicts(self) -> frozenset[str]:
        return _read_name_set(self.path / "element-conflicts", self.name)

    @functools.cached_property
    def os_family(self) -> str | None:
        """The operating system this element declares the image to be, from its
        ``element-os`` file (one word: ``linux``, ``windows``, ...), lower-cased; None when
        it declares none (doc/elements.md, "Images that are not Linux")."""
        words = sorted(_read_name_set(self.path / "element-os", self.name))
        return words[0].lower() if words else None

    @functools.cached_property
    def parameters(self) -> dict[str, _params.Parameter]:
        """The variables this element declares in its parameters.yaml ({} without one:
        an undeclared element is not checked; doc/element-parameters.md)."""
        p = self.path / _params.FILENAME
        return _params.load(p, self.name) if p.is_file() else {}

    @functools.cached_property
    def obsolete(self) -> str | None:
        """Why this element is gone and what replaced it, from its ``element-obsolete``
        file (one line); None for a working element.  Naming an obsolete element is an
        error before anything runs (doc/elements.md, "Obsolete and renamed elements")."""
        return _read_one_line(self.path / "element-obsolete", self.name)

    @functools.cached_property
    def renamed_to(self) -> str | None:
        """The element's new name, from its ``element-renamed`` file; None unless this
        directory is the old name of another element, which a build uses instead."""
        return _read_one_line(self.path / "element-renamed", self.name)

    @property
    def readme(self) -> Path | None:
        for name in ("README.rst", "README.md", "README"):
            p = self.path / name
            if p.is_file():
                return p
        return None

    def phase_dir(self, phase: str) -> Path | None:
        p = self.path / phase
        return p if p.is_dir() else None

    @property
    def environment_files(self) -> list[Path]:
        d = self.path / "environment.d"
        return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []

    @property
    def package_installs_file(self) -> Path | None:
        for name in ("package-installs.yaml", "package-installs.json"):
            p = self.path / name
            if p.is_file():
                return p
        return None

    def package_installs(self) -> dict[str, Any]:
        """The parsed package-installs file ({} if there is none)."""
        p = self.package_installs_file
        if p is None:
            return {}
        data = load_yaml_or_json(p)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ElementError(
                f"element {self.name}: {p.name} must be a mapping of package names",
                hint=f"see {p}",
            )
        return data

    @property
    def pkg_map_file(self) -> Path | None:
        p = self.path / "pkg-map"
        return p if p.is_file() else None

    @property
    def source_repositories(self) -> list[Path]:
        return sorted(self.path.glob("source-repository-*"))

    @property
    def block_device_configs(self) -> list[Path]:
        return sorted(self.path.glob("block-device-*.yaml"))

    def block_device_config(self, arch: str) -> Path | None:
        for name in (f"block-device-{arch}.yaml", "block-device-default.yaml"):
            p = self.path / name
            if p.is_file():
                return p
        return None

    @property
    def static_dir(self) -> Path | None:
        p = self.path / "static"
        return p if p.is_dir() else None

    @property
    def bin_dir(self) -> Path | None:
        p = self.path / "bin"
        return p if p.is_dir() else None


def load_yaml_or_json(path: Path) -> Any:
    """Parse a YAML or JSON element file; a syntax error names the file and line."""
    text = path.read_text(errors="replace")
    try:
        if path.suffix == ".json" or path.name == "pkg-map":
            return json.loads(text) if text.strip() else None
        return yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ElementError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ElementError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
