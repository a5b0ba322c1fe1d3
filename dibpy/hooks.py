"""Phases, the merged hook tree, run-parts ordering and environment.d.

Hooks of all elements are merged into one tree (diskimage-builder's ``TMP_HOOKS_PATH``):
every subdirectory of every element except ``tests`` is copied in, and the same file
name from two elements is an error naming both.  A phase then runs every executable
file in ``<tree>/<phase>`` whose name matches ``^[0-9A-Za-z_-]+$``, ordered like
``LANG=C sort -n``; before each hook every ``environment.d`` file is sourced.

Files that look meant to run but will not (``10-foo.sh``, or a numbered hook that is
not executable) are named in a warning; diskimage-builder skips them silently.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dibpy import events, run
from dibpy.elements.model import Element
from dibpy.errors import CommandError, ElementError, HookError, MultiError

LOG = logging.getLogger("dibpy")

VALID_HOOK_NAME = re.compile(r"^[0-9A-Za-z_-]+$")
#: an environment.d file name (dots allowed, as diskimage-builder's run-parts allows)
VALID_ENV_NAME = re.compile(r"^[0-9A-Za-z_.-]+$")
_NUMBERED = re.compile(r"^[0-9]+[-_]")
_LEADING_NUMBER = re.compile(r"^[0-9]+")
ORIGINS_FILE = ".dibpy-origins.json"
#: where the merged hook tree appears inside the chroot
IN_TARGET_HOOKS = "/tmp/in_target.d"
TAIL = 15


def sort_key(name: str) -> tuple[int, bytes]:
    """``LANG=C sort -n``: by leading number (none counts as 0), then byte order."""
    m = _LEADING_NUMBER.match(name)
    return (int(m.group()) if m else 0, name.encode())


@dataclass(frozen=True)
class Hook:
    name: str
    path: Path
    element: str
    #: the file in the element itself (the hook tree holds a copy)
    source: Path | None = None


@dataclass
class PhaseScan:
    hooks: list[Hook] = field(default_factory=list)
    #: (path, reason) for files that look like hooks but will not run
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def scan_dir(
    directory: Path,
    origins: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> PhaseScan:
    """The hooks that will run from ``directory``, in order, and what is skipped and why."""
    scan = PhaseScan()
    if not directory.is_dir():
        return scan
    for entry in sorted(directory.iterdir(), key=lambda p: sort_key(p.name)):
        if entry.is_dir():
            continue
        name = entry.name
        executable = os.access(entry, os.X_OK) if entry.exists() else False
        numbered = bool(_NUMBERED.match(name))
        if not VALID_HOOK_NAME.match(name):
            if numbered or (executable and entry.suffix in (".sh", ".bash", ".py")):
                bad = sorted({c for c in name if not re.match(r"[0-9A-Za-z_-]", c)})
                scan.skipped.append(
                    (
                        entry,
                        f"its name has {' '.join(repr(c) for c in bad)}: only letters, digits, "
                        f"'-' and '_' run (rename it to {_stem(name)!r})",
                    )
                )
            continue
        if not executable:
            if numbered:
                scan.skipped.append((entry, "it is not executable (chmod +x it)"))
            continue
        element = (origins or {}).get(name, "")
        src = (sources or {}).get(name)
        scan.hooks.append(Hook(name, entry, element, Path(src) if src else None))
    return scan


@dataclass
class HookTree:
    """A merged hook tree (diskimage-builder's TMP_HOOKS_PATH), owned by the build.

    The directory is created by :func:`merge_hooks` and removed with the build directory.
    """

    root: Path
    #: "phase/file" -> element name
    origins: dict[str, str]
    #: "phase/file" -> the path of the file in its element
    sources: dict[str, str] = field(default_factory=dict)

    def phase_origins(self, phase: str) -> dict[str, str]:
        prefix = phase + "/"
        return {k[len(prefix) :]: v for k, v in self.origins.items() if k.startswith(prefix)}

    def scan(self, phase: str) -> PhaseScan:
        prefix = phase + "/"
        sources = {k[len(prefix) :]: v for k, v in self.sources.items() if k.startswith(prefix)}
        return scan_dir(self.root / phase, self.phase_origins(phase), sources)

    def environment_files(self) -> list[Path]:
        return environment_files(self.root / "environment.d")

    @classmethod
    def load(cls, root: Path) -> HookTree:
        f = root / ORIGINS_FILE
        origins = json.loads(f.read_text()) if f.is_file() else {}
        return cls(root, origins)


def environment_files(env_dir: Path) -> list[Path]:
    if not env_dir.is_dir():
        return []
    files = [
        p
        for p in env_dir.iterdir()
        if (p.is_file() or (p.is_symlink() and p.exists())) and VALID_ENV_NAME.match(p.name)
    ]
    return sorted(files, key=lambda p: sort_key(p.name))


def _merged_dirs(el: Element) -> list[Path]:
    """The subdirectories of ``el`` that go into the hook tree (not its tests)."""
    return [
        sub
        for sub in sorted(el.path.iterdir())
        if sub.is_dir()
        and sub.name not in ("tests", "test-elements")
        and not sub.name.startswith(".")
    ]


def _sources(elements: Iterable[Element]) -> tuple[dict[str, Path], dict[str, str], list[str]]:
    """Each merged file's source and element, and every clash (a relative path shipped by
    two elements), with both paths."""
    source: dict[str, Path] = {}
    origins: dict[str, str] = {}
    clashes: list[str] = []
    for el in elements:
        for src in (f for sub in _merged_dirs(el) for f in sorted(_walk_files(sub))):
            rel = src.relative_to(el.path).as_posix()
            if rel in source:
                clashes.append(f"{rel} is in two elements: {source[rel]} and {src}")
                continue
            source[rel] = src
            origins[rel] = el.name
    return source, origins, clashes


CLASH_HINT = "two elements may not ship the same hook or file name; rename one of them"


def hook_clashes(elements: Iterable[Element]) -> list[str]:
    """Every file two elements would both put into the hook tree (checked by ``plan()``
    before any resource exists; :func:`merge_hooks` refuses them too)."""
    return _sources(elements)[2]


def merge_hooks(elements: Iterable[Element], dest: Path) -> HookTree:
    """Copy every element's subdirectories (not ``tests``) into ``dest``.

    The same relative file from two elements is an error naming both paths (all such
    clashes are reported at once, before anything is copied).  Top-level files are not
    merged.
    """
    elements = list(elements)
    source, origins, clashes = _sources(elements)
    if clashes:
        raise MultiError(clashes, hint=CLASH_HINT)
    dest.mkdir(parents=True, exist_ok=True)
    for el in elements:
        for sub in _merged_dirs(el):
            # keep empty phase directories so a phase with no hooks still exists
            (dest / sub.name).mkdir(exist_ok=True)
    for rel, src in source.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    (dest / ORIGINS_FILE).write_text(json.dumps(origins, indent=1, sort_keys=True))
    return HookTree(dest, origins, {k: str(v) for k, v in source.items()})


def _walk_files(d: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(d, followlinks=False):
        rp = Path(root)
        for name in files:
            yield rp / name
        for name in list(dirs):
            p = rp / name
            if p.is_symlink():
                # a symlinked directory is copied as a link, like cp -a does
                dirs.remove(name)
                yield p


def warn_skipped(phase: str, scan: PhaseScan, origins: Mapping[str, str]) -> None:
    for path, reason in scan.skipped:
        element = origins.get(path.name)
        owner = f" (element {element})" if element else ""
        LOG.warning("%s/%s%s will not run: %s", phase, path.name, owner, reason)


# The wrapper sources environment.d files (like dib-run-parts, under set -eu) then
# execs the hook, so sourced variables reach it but never persist between hooks.
# An environment file that fails says so (ENV_FAILED), so that it is blamed, not the hook.
ENV_FAILED = "dib-hook: sourcing failed: "
_WRAPPER = (
    'set -eu -o pipefail; _dib_hook="$1"; _dib_n="$2"; shift 2; '
    '_dib_envs=("${@:1:$_dib_n}"); shift "$_dib_n"; '
    'trap \'_dib_s=$?; [ "$_dib_s" = 0 ] || [ -z "${_dib_e:-}" ] || '
    f'echo "{ENV_FAILED}$_dib_e" >&2\' EXIT; '
    'for _dib_f in "${_dib_envs[@]}"; do _dib_e="$_dib_f"; . "$_dib_f"; done; '
    "_dib_e=; trap - EXIT; "
    'unset _dib_n _dib_envs _dib_f _dib_e; set +eu +o pipefail; exec "$_dib_hook" "$@"'
)


@dataclass
class PhaseTiming:
    phase: str
    timings: list[tuple[str, float]]

    def table(self) -> str:
        if not self.timings:
            return f"{self.phase}: no hooks"
        width = max(len(n) for n, _ in self.timings)
        total = sum(t for _, t in self.timings)
        rows = [f"{self.phase} timings:"]
        for name, t in self.timings:
            rows.append(f"  {name:<{width}}  {t:8.3f} s")
        rows.append(f"  {'total':<{width}}  {total:8.3f} s")
        return "\n".join(rows)


def run_hooks(
    phase: str,
    hooks: Sequence[Hook],
    env_files: Sequence[Path],
    env: Mapping[str, str],
    *,
    chroot: Path | None = None,
    host_root: Path | None = None,
    in_chroot_root: str = IN_TARGET_HOOKS,
    args: Sequence[str] = (),
    before_each: Callable[[], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    origins: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> PhaseTiming:
    """Run ``hooks`` in order, each after sourcing ``env_files``; ``on_line`` also sees
    every line of their output.  ``origins``/``sources`` ("environment.d/FILE" -> element,
    file in the element) name the element of an environment file that fails.

    With ``chroot``, each hook runs inside it; ``host_root`` is the host path of the
    hook tree, which appears in the chroot at ``in_chroot_root``.  A failing hook raises
    HookError naming its element, name, exit status and last lines of output.
    """

    def inside(p: Path) -> str:
        if chroot is None or host_root is None:
            return str(p)
        return in_chroot_root + "/" + p.relative_to(host_root).as_posix()

    timings: list[tuple[str, float]] = []
    env_args = [inside(p) for p in env_files]
    for hook in hooks:
        label = f"{phase}/{hook.name}"
        argv: list[str] = [
            "bash",
            "-c",
            _WRAPPER,
            "dib-hook",
            inside(hook.path),
            str(len(env_args)),
            *env_args,
            *args,
        ]
        if chroot is not None:
            argv = ["chroot", str(chroot), *argv]
        tail: deque[str] = deque(maxlen=TAIL)

        def log_line(line: str, _label: str = label, _tail: deque[str] = tail) -> None:
            _tail.append(line)
            LOG.info("%s: %s", _label, line)
            if on_line is not None:
                on_line(line)

        owner = f" ({hook.element})" if hook.element else ""
        LOG.info("running %s%s", label, owner)
        if before_each is not None:
            before_each()
        where = {"phase": phase, "hook": hook.name, "element": hook.element or None}
        events.emit("hook-start", **where)
        start = time.monotonic()
        try:
            run.run(
                argv,
                env=env,
                inherit_env=False,
                on_line=log_line,
                stderr_to_stdout=True,
                quiet=True,
            )
        except CommandError as e:
            elapsed = time.monotonic() - start
            events.emit(
                "hook-end", **where, seconds=round(elapsed, 3), status="error", error=e.status
            )
            lines = "\n".join("  | " + ln for ln in tail)
            who = f"element {hook.element}" if hook.element else str(hook.path.parent)
            bad_env = next((ln[len(ENV_FAILED) :] for ln in tail if ln.startswith(ENV_FAILED)), "")
            if bad_env:
                rel = "environment.d/" + bad_env.rsplit("/", 1)[-1]
                owner_el = (origins or {}).get(rel)
                src = (sources or {}).get(rel) or bad_env
                raise HookError(
                    f"environment file {rel}"
                    + (f" of element {owner_el}" if owner_el else "")
                    + f", sourced for hook {label} of {who}, {e.status}"
                    + (f"; its last output:\n{lines}" if lines else ""),
                    hint=f"the file is {src}; environment.d files are sourced with set -eu "
                    "before every hook",
                ) from None
            raise HookError(
                f"hook {label} of {who} {e.status} "
                f"after {elapsed:.1f} s" + (f"; its last output:\n{lines}" if lines else ""),
                hint=f"the hook is {hook.source or hook.path}; rerun with -x for a trace, or set "
                f"break=after-error for a shell",
            ) from None
        elapsed = time.monotonic() - start
        events.emit("hook-end", **where, seconds=round(elapsed, 3), status="ok")
        timings.append((hook.name, elapsed))
    timing = PhaseTiming(phase, timings)
    if timings:
        LOG.info("%s", timing.table())
    return timing


def run_phase(
    tree: HookTree,
    phase: str,
    env: Mapping[str, str],
    *,
    chroot: Path | None = None,
    args: Sequence[str] = (),
    before_each: Callable[[], None] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> PhaseTiming:
    """Run one phase of a merged hook tree, warning about files that will not run."""
    scan = tree.scan(phase)
    warn_skipped(phase, scan, tree.phase_origins(phase))
    return run_hooks(
        phase,
        scan.hooks,
        tree.environment_files(),
        env,
        chroot=chroot,
        host_root=tree.root,
        args=args,
        before_each=before_each,
        on_line=on_line,
        origins=tree.origins,
        sources=tree.sources,
    )


__all__ = [
    "ElementError",
    "Hook",
    "HookTree",
    "PhaseScan",
    "PhaseTiming",
    "environment_files",
    "hook_clashes",
    "merge_hooks",
    "run_hooks",
    "run_phase",
    "scan_dir",
    "sort_key",
]


def _stem(name: str) -> str:
    """The runnable name a mis-named hook probably meant (``10-foo.sh`` -> ``10-foo``)."""
    return re.sub(r"[^0-9A-Za-z_-].*$", "", name)
