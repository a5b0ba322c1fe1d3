"""dib-lint: checks over element directories, one function per rule.

Every element directory directly under an elements directory is checked (and each of
its ``test-elements/*``).  A problem is reported as ``ELEMENT/FILE:LINE: RULE: message``.
A file opts out of rules with a comment anywhere in it::

    # dib-lint: disable=sudo,which

Rules (the name is what ``disable=`` takes):

* ``readme``: the element has a README.rst or README.md.
* ``hook-name``: a file in a phase directory that looks meant to run but whose name will
  not (``10-foo.sh``); the same list the build warns about (:func:`dibpy.hooks.scan_dir`).
* ``executable``: a hook in a phase directory that is not executable.
* ``env-executable``: environment.d files are sourced, so they must not be executable.
* ``newline``: a text file does not end with a newline.
* ``sorted`` / ``duplicate``: element-deps, element-provides, element-conflicts entries.
* ``yaml`` / ``json``: package-installs.yaml|json, pkg-map and block-device-*.yaml parse.
* ``shebang``: a hook (or an executable in bin/) has no ``#!`` line.
* ``set-e``, ``set-u``, ``pipefail``: a shell script turns on errexit and nounset (and,
  for bash, pipefail) with ``set``; environment.d files are exempt (they are sourced).
* ``debug-trace`` (warning): a shell hook does not honour ``DIB_DEBUG_TRACE``.
* ``sudo``: a script runs ``sudo``; hooks already run as root and sudo hides that.
* ``which``: a script runs ``which``; use ``command -v`` or ``type -p``.
* ``python-syntax``: a Python hook or ``*.py`` file does not compile.
* ``shellcheck``: ``shellcheck -x -S warning`` findings, when shellcheck is installed.
  Excluded everywhere: SC1090/SC1091 (a sourced file that cannot be followed, such as
  ``$_LIB/die`` or ``$TMP_HOOKS_PATH/...``, which exist only during a build).  Excluded
  in environment.d: SC2034 (a variable set there is used by other elements' hooks).

Only ``debug-trace`` is a warning; every other rule is an error.  The ramdisk
directories ``binary-deps.d``, ``init.d`` and ``udev.d`` hold data (binary lists,
init fragments, udev rules) rather than hooks, so only ``ramdisk-install.d`` is
checked as a phase.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from dibpy import run
from dibpy.elements.model import PHASES
from dibpy.errors import CommandError, ConfigError
from dibpy.hooks import VALID_HOOK_NAME, scan_dir

Severity = Literal["error", "warning"]

#: Directories whose files dib-run-parts runs.
HOOK_DIRS: tuple[str, ...] = (*PHASES, "ramdisk-install.d")
NAME_LIST_FILES: tuple[str, ...] = ("element-deps", "element-provides", "element-conflicts")
SHELLCHECK_EXCLUDE: tuple[str, ...] = ("SC1090", "SC1091")
SHELLCHECK_ENV_EXCLUDE: tuple[str, ...] = (*SHELLCHECK_EXCLUDE, "SC2034")
WARNING_RULES: frozenset[str] = frozenset({"debug-trace"})

_DISABLE = re.compile(r"#[ \t]*dib-lint:[ \t]*disable[ \t]*=[ \t]*([A-Za-z0-9_, \t-]+)")
_SHEBANG = re.compile(r"^#!\s*(\S+)(.*)$")
# a command word at the start of a simple command (after a separator or keyword)
_CMD_POS = r"(?:^|[;&|(`{]\s*|\$\(\s*|\b(?:then|do|else|if|elif|while|until|exec|time)\s+|!\s+)"
_SUDO = re.compile(_CMD_POS + r"sudo(?=\s|$|;)")
_WHICH = re.compile(_CMD_POS + r"which(?=\s)")
_SET = re.compile(r"(?:^\s*|[;&|]\s*)set\s+([^;&|#]*)")
_OPT_LETTERS = {"e": "errexit", "u": "nounset"}


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: where (element, file relative to it, line), which rule, what."""

    element: str
    file: str
    line: int
    rule: str
    message: str
    severity: Severity = "error"

    @property
    def location(self) -> str:
        where = f"{self.element}/{self.file}" if self.file else self.element
        return f"{where}:{self.line}"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.location}: {self.rule}: {prefix}{self.message}"


@dataclass
class SourceFile:
    """A file of an element, read once; ``text`` is None for binary or unreadable files."""

    path: Path
    element: str
    rel: str
    text: str | None
    disabled: frozenset[str]

    @classmethod
    def read(cls, path: Path, element: str, element_dir: Path) -> SourceFile:
        try:
            raw = path.read_bytes()
        except OSError:
            raw = b"\0"
        text = None if b"\0" in raw[:8192] else raw.decode("utf-8", errors="replace")
        disabled: set[str] = set()
        for m in _DISABLE.finditer(text or ""):
            disabled.update(r for r in re.split(r"[,\s]+", m.group(1)) if r)
        return cls(
            path, element, path.relative_to(element_dir).as_posix(), text, frozenset(disabled)
        )

    def problem(self, line: int, rule: str, message: str) -> Problem:
        sev: Severity = "warning" if rule in WARNING_RULES else "error"
        return Problem(self.element, self.rel, line, rule, message, sev)

    @property
    def lines(self) -> list[str]:
        return (self.text or "").splitlines()

    @property
    def interpreter(self) -> str | None:
        """The program named by the ``#!`` line (``env``'s argument for ``/usr/bin/env X``)."""
        if not self.text or not self.text.startswith("#!"):
            return None
        m = _SHEBANG.match(self.text.splitlines()[0])
        if not m:
            return None
        prog = os.path.basename(m.group(1))
        if prog == "env":
            args = [a for a in m.group(2).split() if not a.startswith("-")]
            prog = os.path.basename(args[0]) if args else ""
        return prog

    @property
    def is_shell(self) -> bool:
        interp = self.interpreter
        return interp is not None and interp in ("sh", "bash", "dash")

    @property
    def is_python(self) -> bool:
        interp = self.interpreter
        return self.path.suffix == ".py" or (interp is not None and interp.startswith("python"))


@dataclass
class LintResult:
    problems: list[Problem] = field(default_factory=list)
    elements: int = 0
    files: int = 0
    shellcheck: str | None = None  # the shellcheck binary used, None if not run

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


# ---------------------------------------------------------------- element-level rules


def check_readme(element: str, element_dir: Path) -> list[Problem]:
    if any((element_dir / n).is_file() for n in ("README.rst", "README.md")):
        return []
    return [
        Problem(element, "", 0, "readme", "no README.rst or README.md (say what the element does)")
    ]


def check_hook_dir(element: str, element_dir: Path, hook_dir: Path) -> list[Problem]:
    """Files in a phase directory that will not run although they look meant to."""
    out: list[Problem] = []
    scan = scan_dir(hook_dir)
    for path, reason in scan.skipped:
        rel = path.relative_to(element_dir).as_posix()
        rule = "executable" if "not executable" in reason else "hook-name"
        out.append(Problem(element, rel, 0, rule, f"will not run: {reason}"))
    skipped = {p for p, _ in scan.skipped}
    for entry in sorted(hook_dir.iterdir()):
        if entry in skipped or entry.is_dir() or entry.is_symlink():
            continue
        if VALID_HOOK_NAME.match(entry.name) and not os.access(entry, os.X_OK):
            rel = entry.relative_to(element_dir).as_posix()
            out.append(Problem(element, rel, 0, "executable", "will not run: it is not executable"))
    return out


def hook_dirs(element_dir: Path) -> list[Path]:
    """Phase directories, plus install.d's install-type subdirectories (``*-install``)."""
    out = []
    for name in HOOK_DIRS:
        d = element_dir / name
        if d.is_dir():
            out.append(d)
            if name == "install.d":
                out.extend(
                    sorted(s for s in d.iterdir() if s.is_dir() and s.name.endswith("-install"))
                )
    return out


def check_env_executable(f: SourceFile) -> list[Problem]:
    if not f.path.is_symlink() and os.access(f.path, os.X_OK):
        return [f.problem(0, "env-executable", "environment.d files are sourced: chmod -x it")]
    return []


# ---------------------------------------------------------------- per-file rules


def check_newline(f: SourceFile) -> list[Problem]:
    if f.text and not f.text.endswith("\n"):
        return [f.problem(len(f.lines), "newline", "no newline at the end of the file")]
    return []


def check_name_list(f: SourceFile) -> list[Problem]:
    """element-deps / -provides / -conflicts: sorted, each name once."""
    out: list[Problem] = []
    seen: dict[str, int] = {}
    previous = ""
    for n, raw in enumerate(f.lines, 1):
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        if name in seen:
            out.append(f.problem(n, "duplicate", f"{name!r} is listed twice (line {seen[name]})"))
            continue
        seen[name] = n
        if name < previous:
            out.append(f.problem(n, "sorted", f"{name!r} should come before {previous!r}"))
        previous = max(previous, name)
    return out


def check_data_file(f: SourceFile) -> list[Problem]:
    """package-installs.yaml|json, pkg-map (JSON) and block-device-*.yaml must parse."""
    if f.text is None:
        return [f.problem(0, "yaml", "is not a text file")]
    if f.path.suffix == ".json" or f.path.name == "pkg-map":
        try:
            if f.text.strip():
                json.loads(f.text)
        except json.JSONDecodeError as e:
            return [f.problem(e.lineno, "json", f"invalid JSON: {e.msg}")]
        return []
    try:
        yaml.safe_load(f.text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        return [f.problem(line, "yaml", f"invalid YAML: {getattr(e, 'problem', None) or e}")]
    return []


def check_shebang(f: SourceFile) -> list[Problem]:
    if f.text is None or f.text.startswith("#!"):
        return []
    return [f.problem(1, "shebang", "no #! line, so it cannot be executed")]


def _code_lines(f: SourceFile) -> Iterable[tuple[int, str]]:
    """Lines with comments dropped (roughly: a ``#`` at a word start), heredocs kept."""
    for n, line in enumerate(f.lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield n, re.sub(r"(^|\s)#.*$", "", line)


def shell_options(f: SourceFile) -> set[str]:
    """The long names of every option turned on with ``set`` anywhere in the script."""
    on: set[str] = set()
    for _, line in _code_lines(f):
        for m in _SET.finditer(line):
            words = m.group(1).split()
            i = 0
            while i < len(words):
                w = words[i]
                if w.startswith("-") and not w.startswith("--"):
                    letters = w[1:]
                    for c in letters:
                        if c in _OPT_LETTERS:
                            on.add(_OPT_LETTERS[c])
                    if "o" in letters and i + 1 < len(words):
                        on.add(words[i + 1])
                        i += 1
                i += 1
    return on


def check_shell_options(f: SourceFile) -> list[Problem]:
    """``set -eu -o pipefail`` (any spelling); pipefail only for bash."""
    if not f.is_shell:
        return []
    on = shell_options(f)
    out = []
    if "errexit" not in on:
        out.append(f.problem(1, "set-e", "does not 'set -e' (set -eu -o pipefail)"))
    if "nounset" not in on:
        out.append(f.problem(1, "set-u", "does not 'set -u' (set -eu -o pipefail)"))
    if f.interpreter == "bash" and "pipefail" not in on:
        out.append(f.problem(1, "pipefail", "does not 'set -o pipefail'"))
    return out


def check_debug_trace(f: SourceFile) -> list[Problem]:
    if f.is_shell and "DIB_DEBUG_TRACE" not in (f.text or ""):
        return [
            f.problem(
                1,
                "debug-trace",
                "does not honour DIB_DEBUG_TRACE: "
                "add 'if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi'",
            )
        ]
    return []


def check_sudo(f: SourceFile) -> list[Problem]:
    if not f.is_shell:
        return []
    return [
        f.problem(n, "sudo", "runs sudo: hooks already run as root (use the command directly)")
        for n, line in _code_lines(f)
        if _SUDO.search(line)
    ]


def check_which(f: SourceFile) -> list[Problem]:
    if not f.is_shell:
        return []
    return [
        f.problem(n, "which", "runs 'which': use 'command -v' or 'type -p'")
        for n, line in _code_lines(f)
        if _WHICH.search(line)
    ]


def check_python(f: SourceFile) -> list[Problem]:
    if not f.is_python or f.text is None:
        return []
    try:
        compile(f.text, str(f.path), "exec")
    except SyntaxError as e:
        return [f.problem(e.lineno or 0, "python-syntax", f"does not compile: {e.msg}")]
    except ValueError as e:
        return [f.problem(0, "python-syntax", f"does not compile: {e}")]
    return []


def run_shellcheck(
    files: Sequence[SourceFile], exclude: Sequence[str], shell: str | None = None
) -> list[Problem]:
    """``shellcheck -x -S warning`` over ``files`` in one run; findings as problems."""
    exe = run.which("shellcheck")
    if exe is None or not files:
        return []
    argv = [exe, "-x", "-S", "warning", "-f", "json1", "--exclude", ",".join(exclude)]
    if shell:
        argv += ["--shell", shell]
    by_path = {str(f.path): f for f in files}
    res = run.run([*argv, *by_path], check=False)
    if res.returncode not in (0, 1):
        raise CommandError(argv, res.returncode, res.stderr[-2000:])
    try:
        comments = json.loads(res.stdout or "{}").get("comments", [])
    except json.JSONDecodeError:
        raise CommandError(argv, res.returncode, "unreadable output: " + res.stdout[:500]) from None
    out = []
    for c in comments:
        f = by_path.get(c.get("file", ""))
        if f is None:
            continue
        out.append(f.problem(int(c.get("line", 0)), "shellcheck", f"SC{c['code']}: {c['message']}"))
    return out


# ---------------------------------------------------------------- orchestration


def _walk(element_dir: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(element_dir):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d != "__pycache__"
            and not (Path(root) == element_dir and d == "test-elements")
        )
        for name in sorted(files):
            p = Path(root) / name
            if not p.is_symlink():
                yield p


@dataclass
class _ElementLint:
    problems: list[Problem] = field(default_factory=list)
    files: list[SourceFile] = field(default_factory=list)
    shell: list[SourceFile] = field(default_factory=list)
    env: list[SourceFile] = field(default_factory=list)


def _lint_one(element: str, element_dir: Path, acc: _ElementLint) -> None:
    acc.problems += check_readme(element, element_dir)
    hooks: set[Path] = set()
    for d in hook_dirs(element_dir):
        acc.problems += check_hook_dir(element, element_dir, d)
        hooks.update(h.path for h in scan_dir(d).hooks)
    env_dir = element_dir / "environment.d"
    for path in _walk(element_dir):
        f = SourceFile.read(path, element, element_dir)
        acc.files.append(f)
        found: list[Problem] = []
        in_env = path.parent == env_dir
        found += check_newline(f)
        if in_env:
            found += check_env_executable(f)
        if path.parent == element_dir and path.name in NAME_LIST_FILES:
            found += check_name_list(f)
        if path.parent == element_dir and (
            path.name in ("package-installs.yaml", "package-installs.json", "pkg-map")
            or re.fullmatch(r"block-device-.*\.yaml", path.name)
        ):
            found += check_data_file(f)
        is_hook = path in hooks
        in_bin = path.parent == element_dir / "bin" and os.access(path, os.X_OK)
        if is_hook or in_bin:
            found += check_shebang(f)
        if f.is_shell and not in_env:
            found += check_shell_options(f)
            found += check_sudo(f)
            found += check_which(f)
            if is_hook:
                found += check_debug_trace(f)
            acc.shell.append(f)
        elif in_env and f.text is not None:
            acc.env.append(f)
        found += check_python(f)
        acc.problems += found
    tests = element_dir / "test-elements"
    if tests.is_dir():
        for sub in sorted(tests.iterdir()):
            if sub.is_dir() and not sub.name.startswith("."):
                _lint_one(f"{element}/test-elements/{sub.name}", sub, acc)


def element_dirs(elements_dir: Path) -> list[Path]:
    return sorted(p for p in elements_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def lint(elements_dirs: Iterable[Path], *, shellcheck: bool = True) -> LintResult:
    """Check every element under each directory; raise ConfigError for a missing directory."""
    dirs = list(elements_dirs)
    bad = [str(d) for d in dirs if not d.is_dir()]
    if bad:
        raise ConfigError(
            f"elements directory not found: {', '.join(bad)}",
            hint="dib-lint ELEMENTS_DIR... checks every element directory inside each one",
        )
    acc = _ElementLint()
    result = LintResult()
    for d in dirs:
        for el in element_dirs(d):
            result.elements += 1
            _lint_one(el.name, el, acc)
    found = list(acc.problems)
    if shellcheck and run.which("shellcheck"):
        result.shellcheck = run.which("shellcheck")
        found += run_shellcheck(acc.shell, SHELLCHECK_EXCLUDE)
        found += run_shellcheck(acc.env, SHELLCHECK_ENV_EXCLUDE, shell="bash")
    disabled = {(f.element, f.rel): f.disabled for f in acc.files}
    result.problems = sorted(
        p for p in found if p.rule not in disabled.get((p.element, p.file), frozenset())
    )
    result.files = len(acc.files)
    return result
