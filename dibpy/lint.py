"""dib-lint: checks over element directories, with diskimage-builder's rule names.

Every element directory directly under an elements directory is checked (and each of
its ``test-elements/*``).  A problem is reported as ``ELEMENT/FILE:LINE: RULE: message``.

diskimage-builder's ``dib-lint`` conventions are accepted as they are:

* a file opts out of rules with a comment line ``# dib-lint: disable=RULE [RULE...]``
  (names separated by spaces, as diskimage-builder writes them, or by commas);
* a project opts out everywhere with ``ignore = RULE [RULE...]`` in the ``[dib-lint]``
  section of a ``tox.ini``: the one in the current directory (where diskimage-builder
  looks) and the nearest one at or above each elements directory being linted;
* a line opts out of ``safe_sudo`` or ``which`` with a ``dib-lint: safe_sudo`` or
  ``dib-lint: which`` comment on that line;
* git-ignored files are skipped.

Each rule applies where diskimage-builder's applies (so a tree that passes its lint
passes these): files named ``*.rst``, ``*.yaml`` and ``*.py`` are exempt from the
per-script rules, only ``#!/bin/bash`` scripts need ``set -eu -o pipefail``, and data
files kept in phase directories (``install.d/foo.conf``, the contents of install-type
directories ``install.d/*-<type>-install/``, which are linked into ``install.d`` and read
by the hooks beside them) are not treated as hooks.  :data:`RULES` lists every rule;
``dib-lint --list-rules`` prints it.  Where dibpy is stricter it says so there.

diskimage-builder's checks that it does not let you disable have no name there; here
they are ``readme``, ``sorted``, ``binbash``, ``export``, ``env-trace``, ``env-executable``,
``yaml`` and ``json``, and can be disabled like the rest.  dibpy is more lenient in three
places: ``dibdebugtrace`` is a warning and only for hooks, ``which`` looks only at
commands in shell scripts (not at the word in any text), and ``set -o errexit`` counts
as ``set -e``.  The rules dibpy adds: ``hook-name``, ``hook-skipped`` (a warning),
``shebang`` (a warning), ``duplicate``, ``python-syntax`` and ``shellcheck``.  dibpy's
earlier names for the shared rules (``set-e``, ``set-u``, ``pipefail``, ``debug-trace``,
``sudo``) are still accepted wherever a rule name is.
"""

from __future__ import annotations

import configparser
import json
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from dibpy import run
from dibpy.elements import params
from dibpy.elements.model import PHASES
from dibpy.errors import CommandError, ConfigError
from dibpy.hooks import VALID_HOOK_NAME, scan_dir

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    #: "dib" for diskimage-builder's rules (same name and scope), "dibpy" for our own
    origin: Literal["dib", "dibpy"]
    summary: str


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {r.name: r for r in rules}


E: Severity = "error"
W: Severity = "warning"
RULES: dict[str, Rule] = _rules(
    Rule("readme", E, "dib", "an element has a README.rst (dibpy also accepts README.md)"),
    Rule("executable", E, "dib", "a file that starts with #! is executable"),
    Rule("indent", E, "dib", "a non-Python script indents with multiples of four spaces"),
    Rule("tabindent", E, "dib", "*.rst files and executables do not indent with tabs"),
    Rule(
        "newline",
        E,
        "dib",
        "*.rst files, executables and source-repository-* files end with a newline",
    ),
    Rule("mddocs", E, "dib", "no *.md files (diskimage-builder documents in reStructuredText)"),
    Rule("sorted", E, "dib", "element-deps is sorted (C or dictionary order)"),
    Rule("binbash", E, "dib", "a bash script's #! line is exactly #!/bin/bash"),
    Rule("sete", E, "dib", "a bash script runs 'set -e' (any spelling: set -eu, -o errexit)"),
    Rule("setu", E, "dib", "a bash script runs 'set -u'"),
    Rule("setpipefail", E, "dib", "a bash script runs 'set -o pipefail'"),
    Rule(
        "dibdebugtrace",
        W,
        "dib",
        "a bash hook honours DIB_DEBUG_TRACE (a warning, and for hooks only, in dibpy)",
    ),
    Rule("env-trace", E, "dib", "an environment.d file does not 'set -x'"),
    Rule("env-executable", E, "dib", "an environment.d file is not executable (it is sourced)"),
    Rule("export", E, "dib", "no 'export X=$(cmd)': the export hides cmd's failure"),
    Rule(
        "safe_sudo",
        E,
        "dib",
        "sudo in root.d, extra-data.d, block-device.d, finalise.d and cleanup.d names the "
        "target ($TARGET_ROOT, $TMP_MOUNT_PATH, ...)",
    ),
    Rule("which", E, "dib", "a shell script does not run 'which' (use 'command -v')"),
    Rule("yaml", E, "dib", "every *.yaml file parses"),
    Rule("json", E, "dib", "pkg-map (and, in dibpy, package-installs.json) is valid JSON"),
    Rule(
        "hook-name",
        E,
        "dibpy",
        "a numbered file in a phase directory that is executable or has #! but whose name "
        "dib-run-parts skips (10-foo.sh)",
    ),
    Rule(
        "hook-skipped",
        W,
        "dibpy",
        "a numbered file in a phase directory that is not executable, so it never runs",
    ),
    Rule(
        "shebang",
        W,
        "dibpy",
        "a hook or an executable in bin/ has a #! line (without one, only a shell runs it)",
    ),
    Rule("duplicate", E, "dibpy", "element-deps, -provides and -conflicts name each once"),
    Rule("python-syntax", E, "dibpy", "a Python hook or *.py file compiles"),
    Rule(
        "parameters",
        E,
        "dibpy",
        "parameters.yaml matches its schema (doc/element-parameters.md)",
    ),
    Rule(
        "shellcheck",
        E,
        "dibpy",
        "shellcheck -x -S warning findings, when shellcheck is installed (SC1090/SC1091 "
        "excluded everywhere, SC2034 in environment.d)",
    ),
)

#: dibpy's earlier rule names, still accepted where a rule name is.
ALIASES: dict[str, str] = {
    "set-e": "sete",
    "set-u": "setu",
    "pipefail": "setpipefail",
    "debug-trace": "dibdebugtrace",
    "sudo": "safe_sudo",
    "element-deps": "sorted",
}

#: Directories whose files dib-run-parts runs.
HOOK_DIRS: tuple[str, ...] = (*PHASES, "ramdisk-install.d")
#: Phases run outside the chroot, where diskimage-builder's safe_sudo looks.
SUDO_DIRS: frozenset[str] = frozenset(
    {"root.d", "extra-data.d", "block-device.d", "finalise.d", "cleanup.d"}
)
NAME_LIST_FILES: tuple[str, ...] = ("element-deps", "element-provides", "element-conflicts")
#: File names diskimage-builder's per-script rules never look at.
DIB_EXEMPT_SUFFIXES: frozenset[str] = frozenset({".rst", ".yaml", ".py"})
SHELLCHECK_EXCLUDE: tuple[str, ...] = ("SC1090", "SC1091")
SHELLCHECK_ENV_EXCLUDE: tuple[str, ...] = (*SHELLCHECK_EXCLUDE, "SC2034")

_DISABLE = re.compile(r"#[ \t]*dib-lint:[ \t]*disable[ \t]*=[ \t]*([A-Za-z0-9_, \t-]+)")
_SHEBANG = re.compile(r"^#!\s*(\S+)(.*)$")
_NUMBERED = re.compile(r"^[0-9]+[-_]")
# a command word at the start of a simple command (after a separator or keyword)
_CMD_POS = r"(?:^|[;&|(`{]\s*|\$\(\s*|\b(?:then|do|else|if|elif|while|until|exec|time)\s+|!\s+)"
_WHICH = re.compile(_CMD_POS + r"which(?=\s)")
_SUDO = re.compile(r"\bsudo ")
_SAFE_SUDO = re.compile(
    r"dib-lint: safe_sudo|install-packages|TARGET_ROOT|IMAGE_BLOCK_DEVICE|TMP_MOUNT_PATH"
    r"|TMP_IMAGE_PATH"
)
_INDENT = re.compile(r"^(?: {4})* {1,3}[^ ]")
_TABINDENT = re.compile(r"^ *\t")
_EXPORT = re.compile(r"export .*\$\(")
_SET = re.compile(r"(?:^\s*|[;&|]\s*)set\s+([^;&|#]*)")
_OPT_LETTERS = {"e": "errexit", "u": "nounset"}


def canonical(name: str) -> str:
    """The rule a name (diskimage-builder's, or one of dibpy's older ones) stands for."""
    return ALIASES.get(name, name)


def parse_rule_names(text: str) -> frozenset[str]:
    """Rule names separated by spaces and/or commas, canonicalised."""
    return frozenset(canonical(r) for r in re.split(r"[,\s]+", text) if r)


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


def _problem(element: str, rel: str, line: int, rule: str, message: str) -> Problem:
    return Problem(element, rel, line, rule, message, RULES[rule].severity)


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
            disabled |= parse_rule_names(m.group(1))
        return cls(
            path, element, path.relative_to(element_dir).as_posix(), text, frozenset(disabled)
        )

    def problem(self, line: int, rule: str, message: str) -> Problem:
        return _problem(self.element, self.rel, line, rule, message)

    @property
    def lines(self) -> list[str]:
        return (self.text or "").splitlines()

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0] if self.text else ""

    @property
    def has_shebang(self) -> bool:
        return self.first_line.startswith("#!")

    @property
    def executable(self) -> bool:
        return os.access(self.path, os.X_OK)

    @property
    def interpreter(self) -> str | None:
        """The program named by the ``#!`` line (``env``'s argument for ``/usr/bin/env X``)."""
        m = _SHEBANG.match(self.first_line)
        if not m:
            return None
        prog = os.path.basename(m.group(1))
        if prog == "env":
            args = [a for a in m.group(2).split() if not a.startswith("-")]
            prog = os.path.basename(args[0]) if args else ""
        return prog

    @property
    def is_shell(self) -> bool:
        return self.interpreter in ("sh", "bash", "dash")

    @property
    def is_bash(self) -> bool:
        return self.interpreter == "bash" or "#!/bin/bash" in self.first_line

    @property
    def is_python(self) -> bool:
        # only the #! line says so (``#!/usr/local/bin/dib-python`` included): a comment
        # on the first line that mentions dib-python is not an interpreter
        return self.path.suffix == ".py" or "python" in (self.interpreter or "")


@dataclass
class LintResult:
    problems: list[Problem] = field(default_factory=list)
    elements: int = 0
    files: int = 0
    shellcheck: str | None = None  # the shellcheck binary used, None if not run
    #: the tox.ini files whose [dib-lint] section was read
    config_files: list[Path] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


# ---------------------------------------------------------------- tox.ini [dib-lint]


def read_tox_ini(path: Path) -> frozenset[str]:
    """The rules ``[dib-lint] ignore`` names in ``path`` (empty if it has no such option)."""
    conf = configparser.ConfigParser(interpolation=None, strict=False, allow_no_value=True)
    try:
        conf.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path}: cannot read its [dib-lint] section: {str(e).splitlines()[0]}",
            hint="tox.ini must be an INI file; [dib-lint] ignore = RULE RULE...",
        ) from None
    if not conf.has_option("dib-lint", "ignore"):
        return frozenset()
    return parse_rule_names(conf.get("dib-lint", "ignore"))


def find_tox_ini(start: Path) -> Path | None:
    """The nearest tox.ini at or above ``start``, not looking past a git work tree's top."""
    for d in (start.resolve(), *start.resolve().parents):
        if (d / "tox.ini").is_file():
            return d / "tox.ini"
        if (d / ".git").exists():
            return None
    return None


# ---------------------------------------------------------------- element-level rules


def check_readme(element: str, element_dir: Path) -> list[Problem]:
    if any((element_dir / n).is_file() for n in ("README.rst", "README.md")):
        return []
    return [_problem(element, "", 0, "readme", "no README.rst (say what the element does)")]


def check_hook_dir(
    element: str,
    element_dir: Path,
    hook_dir: Path,
    *,
    install_type: bool = False,
    skip: Collection[Path] = (),
) -> list[Problem]:
    """Numbered files in a phase directory that look like hooks but will not run.

    A file counts as meant to run when its name is numbered (``10-foo``) and it is
    executable or starts with ``#!``; anything else is data a hook reads (diskimage-builder
    keeps ``dhcp-all-interfaces.sh`` or ``10-tcti-emulator.conf`` beside its hooks).  A
    numbered file that is neither is data too inside an install-type directory; in a
    phase directory itself it is probably a hook someone forgot to chmod (``hook-skipped``).
    A non-executable file with ``#!`` is left to ``executable``.
    """
    out: list[Problem] = []
    reasons = dict(scan_dir(hook_dir).skipped)
    for entry in sorted(hook_dir.iterdir()):
        if entry in skip or entry.is_dir() or not entry.exists():
            continue
        if not _NUMBERED.match(entry.name):
            continue
        rel = entry.relative_to(element_dir).as_posix()
        executable = os.access(entry, os.X_OK)
        try:
            with entry.open("rb") as fh:
                shebang = fh.read(2) == b"#!"
        except OSError:
            shebang = False
        if not VALID_HOOK_NAME.match(entry.name):
            if executable or shebang:
                reason = reasons.get(entry, "its name has characters dib-run-parts skips")
                out.append(_problem(element, rel, 0, "hook-name", f"will not run: {reason}"))
        elif not executable and not shebang and not install_type:
            out.append(
                _problem(
                    element,
                    rel,
                    0,
                    "hook-skipped",
                    "will not run: it is not executable"
                    " (chmod +x it, or give data files a name without a number)",
                )
            )
    return out


def hook_dirs(element_dir: Path) -> list[tuple[Path, bool]]:
    """Phase directories, plus install.d's install-type subdirectories (``*-install``),
    each with whether it is an install-type directory."""
    out = []
    for name in HOOK_DIRS:
        d = element_dir / name
        if d.is_dir():
            out.append((d, False))
            if name == "install.d":
                out.extend(
                    (s, True)
                    for s in sorted(d.iterdir())
                    if s.is_dir() and s.name.endswith("-install")
                )
    return out


# ---------------------------------------------------------------- per-file rules


def check_newline(f: SourceFile) -> list[Problem]:
    if f.text and not f.text.endswith("\n"):
        return [f.problem(len(f.lines), "newline", "no newline at the end of the file")]
    return []


def check_tabindent(f: SourceFile) -> list[Problem]:
    bad = [n for n, line in enumerate(f.lines, 1) if _TABINDENT.match(line)]
    if not bad:
        return []
    more = f" (and {len(bad) - 1} more lines)" if len(bad) > 1 else ""
    return [f.problem(bad[0], "tabindent", f"indented with a tab{more}")]


def check_indent(f: SourceFile) -> list[Problem]:
    bad = [n for n, line in enumerate(f.lines, 1) if _INDENT.match(line)]
    if not bad:
        return []
    more = f" (and {len(bad) - 1} more lines)" if len(bad) > 1 else ""
    return [f.problem(bad[0], "indent", f"indent is not a multiple of 4 spaces{more}")]


def check_executable(f: SourceFile) -> list[Problem]:
    if f.has_shebang and not f.executable:
        return [f.problem(1, "executable", "starts with #! but is not executable (chmod +x it)")]
    return []


def check_binbash(f: SourceFile) -> list[Problem]:
    if re.match(r"#!.*bash", f.first_line) and f.first_line != "#!/bin/bash":
        return [f.problem(1, "binbash", f"use '#!/bin/bash', not {f.first_line!r}")]
    return []


def _sort_key(name: str) -> tuple[str, str]:
    # roughly what sort(1) does in an en_US-style locale: case and punctuation count last
    return ("".join(c for c in name.casefold() if c.isalnum()), name)


def check_name_list(f: SourceFile, *, check_sorted: bool) -> list[Problem]:
    """element-deps / -provides / -conflicts: each name once; element-deps sorted.

    Sorted means in C order or in dictionary order (ignoring case and punctuation), as
    ``sort`` gives in the C locale or in a typical UTF-8 one.
    """
    out: list[Problem] = []
    seen: dict[str, int] = {}
    names: list[tuple[int, str]] = []
    for n, raw in enumerate(f.lines, 1):
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        if name in seen:
            out.append(f.problem(n, "duplicate", f"{name!r} is listed twice (line {seen[name]})"))
            continue
        seen[name] = n
        names.append((n, name))
    plain = [name for _, name in names]
    if check_sorted and plain != sorted(plain) and plain != sorted(plain, key=_sort_key):
        previous = ""
        for n, name in names:
            if name < previous:
                out.append(f.problem(n, "sorted", f"{name!r} should come before {previous!r}"))
            previous = max(previous, name)
    return out


def check_json(f: SourceFile) -> list[Problem]:
    if f.text is None:
        return [f.problem(0, "json", "is not a text file")]
    try:
        if f.text.strip():
            json.loads(f.text)
    except json.JSONDecodeError as e:
        return [f.problem(e.lineno, "json", f"invalid JSON: {e.msg}")]
    return []


def check_yaml(f: SourceFile) -> list[Problem]:
    if f.text is None:
        return [f.problem(0, "yaml", "is not a text file")]
    try:
        yaml.safe_load(f.text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        return [f.problem(line, "yaml", f"invalid YAML: {getattr(e, 'problem', None) or e}")]
    return []


def check_parameters(f: SourceFile) -> list[Problem]:
    try:
        params.load(f.path, f.element)
    except ConfigError as e:
        # the message names the element and the file: the problem's own fields do
        why = e.message.split(f"{f.path}: ", 1)[-1].split(f"{f.path}:", 1)[-1]
        m = re.match(r"^(\d+): (.*)", why)
        if m:
            return [f.problem(int(m.group(1)), "parameters", m.group(2))]
        return [f.problem(0, "parameters", why)]
    return []


def check_shebang(f: SourceFile) -> list[Problem]:
    if f.text is None or f.has_shebang:
        return []
    return [
        f.problem(
            1,
            "shebang",
            "no #! line: it runs from a shell's fallback, not by exec (add #!/bin/bash)",
        )
    ]


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
    """A bash script turns on errexit, nounset and pipefail with ``set`` (any spelling)."""
    if not f.is_bash:
        return []
    on = shell_options(f)
    out = []
    if "errexit" not in on:
        out.append(f.problem(1, "sete", "does not 'set -e' (set -eu -o pipefail)"))
    if "nounset" not in on:
        out.append(f.problem(1, "setu", "does not 'set -u' (set -eu -o pipefail)"))
    if "pipefail" not in on:
        out.append(f.problem(1, "setpipefail", "does not 'set -o pipefail'"))
    return out


def check_debug_trace(f: SourceFile) -> list[Problem]:
    if f.is_bash and "DIB_DEBUG_TRACE" not in (f.text or ""):
        return [
            f.problem(
                1,
                "dibdebugtrace",
                "does not honour DIB_DEBUG_TRACE: "
                "add 'if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi'",
            )
        ]
    return []


def check_env_file(f: SourceFile) -> list[Problem]:
    out = []
    if "set -x" in (f.text or ""):
        line = next(n for n, text in enumerate(f.lines, 1) if "set -x" in text)
        out.append(
            f.problem(line, "env-trace", "sets tracing (set -x) in every hook it is read by")
        )
    if not f.path.is_symlink() and f.executable:
        out.append(f.problem(0, "env-executable", "environment.d files are sourced: chmod -x it"))
    return out


def check_export(f: SourceFile) -> list[Problem]:
    return [
        f.problem(n, "export", "split 'export X=$(...)' in two, so set -e sees the failure")
        for n, line in _code_lines(f)
        if _EXPORT.search(line)
    ]


def _logical_lines(f: SourceFile) -> Iterable[tuple[int, str]]:
    """Lines with backslash continuations joined, as the shell's ``read`` gives them."""
    start, parts = 0, list[str]()
    for n, line in enumerate(f.lines, 1):
        if not parts:
            start = n
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield start, "".join(parts)
        parts = []
    if parts:
        yield start, "".join(parts)


def check_safe_sudo(f: SourceFile) -> list[Problem]:
    """sudo outside the chroot must visibly work on the image (diskimage-builder's list)."""
    out = []
    for n, line in _logical_lines(f):
        stripped = line.strip()
        if stripped.startswith("#") or not _SUDO.search(stripped):
            continue
        if _SAFE_SUDO.search(stripped):
            continue
        out.append(
            f.problem(
                n,
                "safe_sudo",
                "sudo outside the chroot that names no target path ($TARGET_ROOT, "
                "$TMP_MOUNT_PATH, ...); add '# dib-lint: safe_sudo' if it is meant",
            )
        )
    return out


def check_which(f: SourceFile) -> list[Problem]:
    if not f.is_shell:
        return []
    return [
        f.problem(n, "which", "runs 'which': use 'command -v' or 'type -p'")
        for n, line in _code_lines(f)
        if _WHICH.search(line) and "dib-lint: which" not in f.lines[n - 1]
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


def git_ignored(elements_dir: Path, paths: Sequence[Path]) -> set[Path]:
    """Which of ``paths`` git ignores (none when git is missing or this is no work tree)."""
    git = run.which("git")
    if git is None or not paths:
        return set()
    res = run.run(
        [git, "-C", elements_dir, "check-ignore", "--stdin"],
        input="".join(f"{p}\n" for p in paths),
        check=False,
        quiet=True,
    )
    if res.returncode != 0:  # 1: nothing ignored; 128: not a work tree
        return set()
    return {Path(line) for line in res.stdout.splitlines() if line}


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
    ignored: set[Path] = field(default_factory=set)


def _check_file(f: SourceFile, element_dir: Path, hooks: set[Path]) -> list[Problem]:
    path = f.path
    top = path.parent == element_dir
    parts = Path(f.rel).parts
    in_env = parts[0] == "environment.d"
    is_hook = path in hooks
    found: list[Problem] = []
    if f.text is not None and path.suffix not in DIB_EXEMPT_SUFFIXES:
        # diskimage-builder's per-script rules
        if f.has_shebang:
            found += check_executable(f)
            if not f.is_python:
                found += check_indent(f)
        found += check_binbash(f)
        if in_env:
            found += check_env_file(f)
        else:
            found += check_shell_options(f)
            if is_hook:
                found += check_debug_trace(f)
        found += check_export(f)
        if parts[0] in SUDO_DIRS:
            found += check_safe_sudo(f)
        found += check_which(f)
    if f.text is not None and (path.suffix == ".rst" or f.executable):
        found += check_tabindent(f)
        found += check_newline(f)
    elif path.name.startswith("source-repository-"):
        found += check_newline(f)  # read line by line: a last line without \n is lost
    if path.suffix == ".md":
        found.append(f.problem(0, "mddocs", "a .md file: document elements in README.rst"))
    if path.suffix == ".yaml":
        found += check_yaml(f)
    if top and path.name == params.FILENAME and not any(p.rule == "yaml" for p in found):
        found += check_parameters(f)
    if (path.name == "pkg-map" and not f.executable) or (
        top and path.name == "package-installs.json"
    ):
        found += check_json(f)
    if top and path.name in NAME_LIST_FILES and f.text is not None:
        found += check_name_list(f, check_sorted=path.name == "element-deps")
    in_bin = parts[0] == "bin" and len(parts) == 2 and f.executable
    if is_hook or in_bin:
        found += check_shebang(f)
    found += check_python(f)
    return found


def _lint_one(element: str, element_dir: Path, acc: _ElementLint, *, top: bool) -> None:
    if top:
        acc.problems += check_readme(element, element_dir)
    hooks: set[Path] = set()
    for d, install_type in hook_dirs(element_dir):
        acc.problems += check_hook_dir(
            element, element_dir, d, install_type=install_type, skip=acc.ignored
        )
        hooks.update(h.path for h in scan_dir(d).hooks)
    for path in _walk(element_dir):
        if path in acc.ignored:
            continue
        f = SourceFile.read(path, element, element_dir)
        acc.files.append(f)
        acc.problems += _check_file(f, element_dir, hooks)
        if Path(f.rel).parts[0] == "environment.d":
            if f.text is not None:
                acc.env.append(f)
        elif f.is_shell:
            acc.shell.append(f)
    tests = element_dir / "test-elements"
    if tests.is_dir():
        for sub in sorted(tests.iterdir()):
            if sub.is_dir() and not sub.name.startswith("."):
                _lint_one(f"{element}/test-elements/{sub.name}", sub, acc, top=False)


def element_dirs(elements_dir: Path) -> list[Path]:
    return sorted(p for p in elements_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def lint(
    elements_dirs: Iterable[Path],
    *,
    shellcheck: bool = True,
    ignore: Iterable[str] = (),
    cwd: Path | None = None,
) -> LintResult:
    """Check every element under each directory; raise ConfigError for a missing directory.

    Rules named in ``ignore``, in the ``[dib-lint]`` section of ``cwd``'s tox.ini (the
    current directory's by default) and in the nearest tox.ini above each elements
    directory are not reported.
    """
    dirs = list(elements_dirs)
    bad = [str(d) for d in dirs if not d.is_dir()]
    if bad:
        raise ConfigError(
            f"elements directory not found: {', '.join(bad)}",
            hint="dib-lint ELEMENTS_DIR... checks every element directory inside each one",
        )
    result = LintResult()
    everywhere = set(parse_rule_names(" ".join(ignore)))
    here = (cwd or Path.cwd()) / "tox.ini"
    if here.is_file():
        everywhere |= read_tox_ini(here)
        result.config_files.append(here.resolve())
    found: list[Problem] = []
    shell: list[SourceFile] = []
    env: list[SourceFile] = []
    for d in dirs:
        tree_off = frozenset(everywhere)
        tox = find_tox_ini(d)
        if tox is not None:
            tree_off |= read_tox_ini(tox)
            if tox not in result.config_files:
                result.config_files.append(tox)
        acc = _ElementLint()
        elements = element_dirs(d)
        acc.ignored = git_ignored(d, [p for el in elements for p in _walk_all(el)])
        for el in elements:
            result.elements += 1
            _lint_one(el.name, el, acc, top=True)
        # filtered per tree: the same element name may be in two trees (an override)
        off = {(f.element, f.rel): f.disabled | tree_off for f in acc.files}
        found += (p for p in acc.problems if p.rule not in off.get((p.element, p.file), tree_off))
        for f in acc.files:
            f.disabled = off[(f.element, f.rel)]
        shell += (f for f in acc.shell if "shellcheck" not in f.disabled)
        env += (f for f in acc.env if "shellcheck" not in f.disabled)
        result.files += len(acc.files)
    if shellcheck and run.which("shellcheck"):
        result.shellcheck = run.which("shellcheck")
        found += run_shellcheck(shell, SHELLCHECK_EXCLUDE)
        found += run_shellcheck(env, SHELLCHECK_ENV_EXCLUDE, shell="bash")
    result.problems = sorted(found)
    return result


def _walk_all(element_dir: Path) -> Iterable[Path]:
    """Every file :func:`_lint_one` reads for ``element_dir``, test elements included."""
    yield from _walk(element_dir)
    tests = element_dir / "test-elements"
    if tests.is_dir():
        for sub in sorted(tests.iterdir()):
            if sub.is_dir() and not sub.name.startswith("."):
                yield from _walk_all(sub)


def rules_table(rules: Mapping[str, Rule] = RULES) -> str:
    """The rule list ``dib-lint --list-rules`` prints."""
    width = max(len(n) for n in rules)
    lines = []
    for r in rules.values():
        tag = "diskimage-builder" if r.origin == "dib" else "dibpy"
        lines.append(f"{r.name:<{width}}  {r.severity:<7}  {tag:<17}  {r.summary}")
    aliases = ", ".join(f"{old}={new}" for old, new in ALIASES.items())
    lines.append(f"also accepted: {aliases}")
    return "\n".join(lines)
