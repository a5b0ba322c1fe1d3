"""Squash every element's package-installs file into per-phase package lists (build host).

Reads ``package-installs.yaml`` / ``.json`` of each element in IMAGE_ELEMENT_YAML (and
the deprecated ``<phase>/package-installs-<name>`` lists), applies
``phase``, ``uninstall``, ``build-only``, ``installtype``, ``arch``/``not-arch``,
``dib_python_version`` and ``when``, maps names through the element's pkg-map for
DISTRO_NAME/DIB_RELEASE, and writes into the hook tree:

* ``package-installs.json``: diskimage-builder's format,
  ``{phase: {"install": [[pkg, element], ...], "uninstall": [...]}}`` (names unmapped);
* ``package-installs/<phase>.install`` and ``<phase>.uninstall``: the final package names,
  one per line, de-duplicated, so each phase needs a single package-manager run.

Usage: ``squash.py TREE``.  Errors name the file and package and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pkg-map-tools"))

import pkgmap  # noqa: E402

KEYS = {
    "phase",
    "uninstall",
    "build-only",
    "installtype",
    "arch",
    "not-arch",
    "dib_python_version",
    "when",
}
PHASES = ("pre-install.d", "install.d", "post-install.d")
ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64el": "ppc64le"}


class SquashError(Exception):
    pass


def _arch(a: str) -> str:
    a = a.strip()
    return ARCH_ALIASES.get(a, a)


def _arch_list(value: Any) -> set[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return {_arch(str(a)) for a in items if str(a).strip()}


def _when_ok(when: Any, env: Mapping[str, str], where: str) -> bool:
    conds = when if isinstance(when, list) else [when]
    for cond in conds:
        cond = str(cond)
        if "!=" in cond:
            var, _, val = cond.partition("!=")
            negate = True
        elif "=" in cond:
            var, _, val = cond.partition("=")
            negate = False
        else:
            raise SquashError(f"{where}: 'when: {cond}' must be VAR=value or VAR!=value")
        var, val = var.strip(), val.strip()
        if var not in env:
            raise SquashError(f"{where}: 'when: {cond}' uses {var}, which is not set")
        if (env[var] == val) == negate:
            return False
    return True


def _entries(spec: Any, where: str) -> list[dict[str, Any]]:
    if spec is None:
        return [{}]
    if isinstance(spec, dict):
        items = [spec]
    elif isinstance(spec, list) and all(isinstance(i, dict) for i in spec):
        items = spec
    else:
        raise SquashError(f"{where}: expected nothing, a mapping or a list of mappings")
    for item in items:
        unknown = sorted(set(item) - KEYS)
        if unknown:
            raise SquashError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}"
            )
        if "arch" in item and "not-arch" in item:
            raise SquashError(f"{where}: 'arch' and 'not-arch' cannot both be given")
        phase = item.get("phase", "install.d")
        if phase not in PHASES:
            raise SquashError(f"{where}: phase {phase!r} is not one of {', '.join(PHASES)}")
    return items


def load_file(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise SquashError(f"{path}: cannot parse: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SquashError(f"{path}: must be a mapping of package names")
    return data


def element_file(path: Path) -> Path | None:
    for name in ("package-installs.yaml", "package-installs.json"):
        if (path / name).is_file():
            return path / name
    return None


def legacy_lists(path: Path) -> list[tuple[str, str, str]]:
    """The deprecated ``<phase>/package-installs-<name>`` files of an element: one package
    per line, installed in that phase; ``-name`` is removed after install.d (with the
    other uninstalls, post-install.d/95).  Returns (phase, package, action)."""
    out = []
    for phase in PHASES:
        d = path / phase
        if not d.is_dir():
            continue
        for f in sorted(d.glob("package-installs-*")):
            if not f.is_file():
                continue
            for line in f.read_text().splitlines():
                pkg = line.split("#", 1)[0].strip()
                if not pkg:
                    continue
                if pkg.startswith("-"):
                    out.append(("post-install.d", pkg[1:], "uninstall"))
                else:
                    out.append((phase, pkg, "install"))
    return out


def squash(
    elements: Mapping[str, Path], env: Mapping[str, str]
) -> dict[str, dict[str, list[list[str]]]]:
    """{phase: {"install"|"uninstall": [[package, element], ...]}} for this build."""
    arch = _arch(env.get("ARCH", ""))
    default_type = env.get("DIB_DEFAULT_INSTALLTYPE", "source")
    py_version = env.get("DIB_PYTHON_VERSION", "3")
    out: dict[str, dict[str, list[list[str]]]] = {}
    for element, path in sorted(elements.items()):
        for phase, pkg, action in legacy_lists(path):
            lst = out.setdefault(phase, {}).setdefault(action, [])
            if [pkg, element] not in lst:
                lst.append([pkg, element])
        f = element_file(path)
        if f is None:
            continue
        for pkg, spec in load_file(f).items():
            where = f"{f}: package {pkg}"
            for item in _entries(spec, where):
                if "arch" in item and arch not in _arch_list(item["arch"]):
                    continue
                if "not-arch" in item and arch in _arch_list(item["not-arch"]):
                    continue
                if "installtype" in item:
                    var = "DIB_INSTALLTYPE_" + element.replace("-", "_")
                    if env.get(var, default_type) != item["installtype"]:
                        continue
                if "dib_python_version" in item and str(item["dib_python_version"]) != py_version:
                    continue
                if "when" in item and not _when_ok(item["when"], env, where):
                    continue
                phase = item.get("phase", "install.d")
                actions = []
                if item.get("uninstall"):
                    actions.append((phase, "uninstall"))
                else:
                    actions.append((phase, "install"))
                    if item.get("build-only"):
                        actions.append(("post-install.d", "uninstall"))
                for ph, action in actions:
                    lst = out.setdefault(ph, {}).setdefault(action, [])
                    if [str(pkg), element] not in lst:
                        lst.append([str(pkg), element])
    return out


def resolve(
    squashed: Mapping[str, Mapping[str, list[list[str]]]],
    elements: Mapping[str, Path],
    env: Mapping[str, str],
) -> dict[tuple[str, str], list[str]]:
    """(phase, action) -> final package names, mapped through each element's pkg-map."""
    distro, release = env.get("DISTRO_NAME", ""), env.get("DIB_RELEASE", "")
    maps: dict[str, dict[str, str] | None] = {}
    out: dict[tuple[str, str], list[str]] = {}
    for phase, actions in squashed.items():
        for action, pairs in actions.items():
            names: list[str] = []
            for pkg, element in pairs:
                if element not in maps:
                    f = elements[element] / "pkg-map"
                    maps[element] = (
                        pkgmap.flatten(pkgmap.load(f), distro, release) if f.is_file() else None
                    )
                for n in pkgmap.map_names([pkg], maps[element]):
                    if n not in names:
                        names.append(n)
            out[(phase, action)] = names
    return out


def write(tree: Path, env: Mapping[str, str]) -> None:
    elements = pkgmap.image_elements(env)
    squashed = squash(elements, env)
    final = resolve(squashed, elements, env)
    (tree / "package-installs.json").write_text(json.dumps(squashed, indent=1, sort_keys=True))
    d = tree / "package-installs"
    d.mkdir(exist_ok=True)
    for phase in PHASES:
        for action in ("install", "uninstall"):
            names = final.get((phase, action), [])
            (d / f"{phase}.{action}").write_text("".join(n + "\n" for n in names))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: squash.py TREE", file=sys.stderr)
        return 2
    try:
        write(Path(argv[0]), os.environ)
    except (SquashError, pkgmap.PkgMapError) as e:
        print(f"package-installs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
