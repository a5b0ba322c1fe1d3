"""dib-lint against diskimage-builder's own: its element tree, and its lint as an oracle.

diskimage-builder's tree passes its own ``dib-lint`` in its CI, so dibpy's lint must find
nothing there that diskimage-builder's would: every error would be a false problem.  A
third-party-style tree (install-type data files, disable comments, a tox.ini) is then
linted by both tools, clean and with one violation at a time, and the two must flag the
same files.  diskimage-builder's script comes from the release's wheel (tests/dibref.py);
it runs under bash with ``python`` on PATH and a stand-in flake8 (dibpy's lint checks
Python syntax only).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dibpy.errors import ConfigError
from dibpy.lint import RULES, lint
from tests.dibref import DIB_VERSION, dib_elements, dib_release

REPO = Path(__file__).resolve().parents[2]
HOOK_HEAD = (
    "#!/bin/bash\n"
    "if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then\n"
    "    set -x\n"
    "fi\n"
    "set -eu\n"
    "set -o pipefail\n"
)


# ---------------------------------------------------------------- diskimage-builder's tree


def test_dib_elements_report_nothing_dib_lint_would_not() -> None:
    result = lint([dib_elements()], shellcheck=False)
    assert result.elements > 100
    assert [str(p) for p in result.errors] == []
    # what dibpy says beyond diskimage-builder: a numbered cleanup.d file that is not
    # executable, which dib-run-parts silently skips (it never runs in DIB either)
    assert [(p.element, p.file, p.rule) for p in result.warnings] == [
        ("enable-serial-console", "cleanup.d/99-fix-grub", "hook-skipped")
    ]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_dib_elements_with_shellcheck_only_add_shellcheck_findings() -> None:
    result = lint([dib_elements()], shellcheck=True)
    assert result.shellcheck is not None
    assert {p.rule for p in result.errors} <= {"shellcheck"}


def test_dib_disable_comments_are_what_silences_its_tree(tmp_path: Path) -> None:
    """Without its disable comments, DIB's tree fails: the comments are honoured, not
    the rules missing."""
    src = dib_elements()
    names = ["ramdisk-base", "rhel-common", "dhcp-all-interfaces", "iso"]
    for name in names:
        shutil.copytree(src / name, tmp_path / name, symlinks=True)
    assert lint([tmp_path], shellcheck=False).errors == []
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_text(errors="replace")
            stripped = re.sub(r"# dib-lint: (disable=[^\n]*|safe_sudo)", "#", text)
            if stripped != text:
                path.write_text(stripped)
    found = {(p.element, p.file, p.rule) for p in lint([tmp_path], shellcheck=False).errors}
    assert ("ramdisk-base", "extra-data.d/scripts/init", "sete") in found
    assert ("ramdisk-base", "extra-data.d/scripts/init", "setpipefail") in found
    assert ("rhel-common", "install.d/10-openstack-selinux-rhel", "sete") in found
    assert ("iso", "cleanup.d/100-build-iso", "safe_sudo") in found


# ---------------------------------------------------------------- a third-party tree


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def third_party(root: Path) -> Path:
    """A project as diskimage-builder's lint expects: ``elements/`` and a tox.ini."""
    e = root / "elements"
    write(root / "tox.ini", "[tox]\nenvlist = pep8\n\n[dib-lint]\nignore = tabindent\n")
    foo = e / "foo"
    write(foo / "README.rst", "foo\n===\n\nInstalls foo.\n")
    write(foo / "element-deps", "dib-init-system\npackage-installs\n")
    write(foo / "package-installs.yaml", "foo:\nfoo-dev:\n  phase: pre-install.d\n")
    write(foo / "pkg-map", '{"family": {"debian": {"foo-dev": "libfoo-dev"}}}\n')
    write(foo / "environment.d" / "10-foo.bash", "export DIB_FOO_VERSION=${DIB_FOO_VERSION:-1}\n")
    write(foo / "install.d" / "50-foo", HOOK_HEAD + 'echo "foo"\n', 0o755)
    # a script the hook copies into the image: executable, no number, not a hook
    write(foo / "install.d" / "foo-helper.sh", HOOK_HEAD + "echo helper\n", 0o755)
    # install-type directory: a hook plus data files the hook reads from beside itself
    src = foo / "install.d" / "foo-source-install"
    write(src / "60-foo-source", HOOK_HEAD + 'cp "$(dirname $0)/foo.service" /etc/\n', 0o755)
    write(src / "10-foo-dropin.conf", "[Service]\nRestart=always\n")
    write(src / "foo.service", "[Unit]\nDescription=foo")  # no newline: DIB does not mind
    write(src / "policy", "measure func=BPRM_CHECK\n")
    write(
        foo / "root.d" / "10-foo",
        HOOK_HEAD
        + 'sudo mkdir -p "$TARGET_ROOT/opt/foo"\n'
        + "sudo cp foo.tar \\\n    $TARGET_ROOT/opt/foo/\n"
        + "sudo true  # dib-lint: safe_sudo\n",
        0o755,
    )
    write(
        foo / "extra-data.d" / "scripts" / "module" / "module-setup.sh",
        "#!/bin/bash\n# dracut sources this\n# dib-lint: disable=sete setu setpipefail "
        "dibdebugtrace\n\ncheck() {\n    return 0\n}\n",
        0o755,
    )
    write(
        foo / "static" / "usr" / "local" / "bin" / "foo-tool",
        HOOK_HEAD + "echo tool\n",
        0o755,
    )
    write(foo / "test-elements" / "foo-build" / "element-deps", "foo\n")
    bar = e / "bar"
    write(bar / "README.rst", "bar\n===\n")
    write(
        bar / "post-install.d" / "20-bar",
        HOOK_HEAD + "# dib-lint: disable=indent\nif true; then\n  echo two\nfi\n",
        0o755,
    )
    # tabs: silenced by tox.ini's ignore
    write(bar / "bin" / "bar-tool", HOOK_HEAD + "if true; then\n\techo tab\nfi\n", 0o755)
    return root


def dib_lint_oracle(project: Path, tmp_path: Path) -> tuple[int, set[str], str]:
    """Run diskimage-builder's dib-lint in ``project``: (status, files flagged, output)."""
    script = dib_release() / f"diskimage_builder-{DIB_VERSION}.data" / "scripts" / "dib-lint"
    if not script.is_file():
        pytest.skip(f"no dib-lint script in diskimage-builder {DIB_VERSION}'s wheel")
    for tool in ("bash", "file", "grep", "sed"):
        if shutil.which(tool) is None:
            pytest.skip(f"diskimage-builder's dib-lint needs {tool}, which is not installed")
    bindir = tmp_path / "oracle-bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "python").exists():
        (bindir / "python").symlink_to(sys.executable)
        write(bindir / "flake8", "#!/bin/sh\nexit 0\n", 0o755)
    libdir = tmp_path / "oracle-lib"
    libdir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ELEMENTS_DIR": "elements",
        "LIB_DIR": str(libdir),
        "GIT_CEILING_DIRECTORIES": str(project.parent),
    }
    r = subprocess.run(
        ["bash", str(script)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    flagged: set[str] = set()
    for line in r.stdout.splitlines():
        if line.startswith("ERROR:"):
            flagged.update(re.findall(r"elements/([^\s:]+)", line))
    return r.returncode, flagged, r.stdout + r.stderr


def dibpy_flags(project: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """Files dibpy flags with diskimage-builder's rules, and every (file, rule) it flags."""
    result = lint([project / "elements"], shellcheck=False, cwd=project)
    every = {(f"{p.element}/{p.file}".rstrip("/"), p.rule) for p in result.problems}
    dib = {f for f, rule in every if RULES[rule].origin == "dib"}
    return dib, every


def test_third_party_tree_is_clean_for_both(tmp_path: Path) -> None:
    project = third_party(tmp_path / "project")
    rc, flagged, out = dib_lint_oracle(project, tmp_path)
    assert (rc, flagged) == (0, set()), out
    assert dibpy_flags(project) == (set(), set())


def _append(rel: str, text: str) -> Callable[[Path], None]:
    def change(e: Path) -> None:
        with (e / rel).open("a") as fh:
            fh.write(text)

    return change


def _replace(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def change(e: Path) -> None:
        path = e / rel
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return change


def _chmod(rel: str, mode: int) -> Callable[[Path], None]:
    return lambda e: (e / rel).chmod(mode)


def _new(rel: str, text: str, mode: int = 0o644) -> Callable[[Path], None]:
    def change(e: Path) -> None:
        write(e / rel, text, mode)

    return change


def _remove(rel: str) -> Callable[[Path], None]:
    return lambda e: (e / rel).unlink()


TOOL = "foo/static/usr/local/bin/foo-tool"
HOOK = "foo/install.d/50-foo"
ROOT_HOOK = "foo/root.d/10-foo"
MODULE = "foo/extra-data.d/scripts/module/module-setup.sh"
ENV = "foo/environment.d/10-foo.bash"

# (what is broken, the change, the file both must flag, the rules dibpy gives it)
VIOLATIONS: list[tuple[str, Callable[[Path], None], str, set[str]]] = [
    ("shebang not executable", _chmod(TOOL, 0o644), TOOL, {"executable"}),
    ("three-space indent", _append(HOOK, "if true; then\n   echo 3\nfi\n"), HOOK, {"indent"}),
    ("no set -e", _replace(HOOK, "set -eu\n", "set -u\n"), HOOK, {"sete"}),
    ("no set -u", _replace(HOOK, "set -eu\n", "set -e\n"), HOOK, {"setu"}),
    ("no pipefail", _replace(HOOK, "set -o pipefail\n", ""), HOOK, {"setpipefail"}),
    (
        "no DIB_DEBUG_TRACE",
        _replace(ROOT_HOOK, "if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then\n", "if false; then\n"),
        ROOT_HOOK,
        {"dibdebugtrace"},
    ),
    ("env bash", _replace(TOOL, "#!/bin/bash", "#!/usr/bin/env bash"), TOOL, {"binbash"}),
    ("unsafe sudo", _append(ROOT_HOOK, "sudo rm -rf /tmp/foo\n"), ROOT_HOOK, {"safe_sudo"}),
    ("which", _append(HOOK, "which foo\n"), HOOK, {"which"}),
    ("export $()", _append(HOOK, "export FOO=$(date)\n"), HOOK, {"export"}),
    ("no final newline", _replace(TOOL, "echo tool\n", "echo tool"), TOOL, {"newline"}),
    (
        "source-repository without newline",
        _new("foo/source-repository-foo", "foo git /opt/foo https://example.com/foo"),
        "foo/source-repository-foo",
        {"newline"},
    ),
    ("markdown", _new("foo/NOTES.md", "# notes\n"), "foo/NOTES.md", {"mddocs"}),
    ("no README", _remove("bar/README.rst"), "bar", {"readme"}),
    (
        "element-deps unsorted",
        _new("foo/element-deps", "package-installs\ndib-init-system\n"),
        "foo/element-deps",
        {"sorted"},
    ),
    ("env sets -x", _append(ENV, "set -x\n"), ENV, {"env-trace"}),
    ("env executable", _chmod(ENV, 0o755), ENV, {"env-executable"}),
    (
        "bad YAML",
        _new("foo/package-installs.yaml", "foo: [\n"),
        "foo/package-installs.yaml",
        {"yaml"},
    ),
    ("bad pkg-map", _new("foo/pkg-map", "{'a': 1}\n"), "foo/pkg-map", {"json"}),
    (
        "disable comment removed",
        _replace(MODULE, "# dib-lint: disable=sete setu setpipefail dibdebugtrace\n", ""),
        MODULE,
        {"sete", "setu", "setpipefail"},
    ),
    (
        "tox.ini ignore removed",
        lambda e: (e.parent / "tox.ini").write_text("[tox]\nenvlist = pep8\n"),
        "bar/bin/bar-tool",
        {"tabindent"},
    ),
]


@pytest.mark.parametrize(
    ("change", "target", "expected"),
    [pytest.param(c, t, x, id=name) for name, c, t, x in VIOLATIONS],
)
def test_one_violation_flagged_by_both(
    tmp_path: Path, change: Callable[[Path], None], target: str, expected: set[str]
) -> None:
    project = third_party(tmp_path / "project")
    change(project / "elements")
    rc, flagged, out = dib_lint_oracle(project, tmp_path)
    assert (rc, flagged) == (1, {target}), out
    dib_files, every = dibpy_flags(project)
    assert dib_files == {target}
    assert {rule for f, rule in every if f == target} == expected
    assert {f for f, _ in every} == {target}  # and nothing else, dibpy's extras included


def test_dibpy_extras_on_the_third_party_tree(tmp_path: Path) -> None:
    """Hook names that never run: dibpy reports them, diskimage-builder does not."""
    project = third_party(tmp_path / "project")
    e = project / "elements"
    write(e / "foo" / "install.d" / "70-late.sh", HOOK_HEAD, 0o755)
    write(e / "foo" / "cleanup.d" / "99-forgot-chmod", "set -eux\nrm -f x\n")
    rc, flagged, out = dib_lint_oracle(project, tmp_path)
    assert (rc, flagged) == (0, set()), out
    result = lint([e], shellcheck=False, cwd=project)
    assert {(p.file, p.rule, p.severity) for p in result.problems} == {
        ("install.d/70-late.sh", "hook-name", "error"),
        ("cleanup.d/99-forgot-chmod", "hook-skipped", "warning"),
    }


def test_tox_ini_found_above_the_tree_from_elsewhere(tmp_path: Path) -> None:
    project = third_party(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = lint([project / "elements"], shellcheck=False, cwd=elsewhere)
    assert result.problems == []
    assert result.config_files == [(project / "tox.ini").resolve()]
    # and the current directory's tox.ini applies to every tree, as diskimage-builder's
    (project / "tox.ini").write_text("[tox]\n")
    write(elsewhere / "tox.ini", "[dib-lint]\nignore = tabindent,readme\n")
    (project / "elements" / "bar" / "README.rst").unlink()
    assert lint([project / "elements"], shellcheck=False, cwd=elsewhere).problems == []
    assert {p.rule for p in lint([project / "elements"], shellcheck=False).problems} == {
        "tabindent",
        "readme",
    }


def test_git_ignored_files_are_skipped(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = third_party(tmp_path / "project")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    write(project / ".gitignore", "*.orig\n")
    write(project / "elements" / "foo" / "install.d" / "50-foo.orig", "no newline", 0o755)
    assert lint([project / "elements"], shellcheck=False, cwd=project).problems == []
    (project / ".gitignore").write_text("")
    found = lint([project / "elements"], shellcheck=False, cwd=project).problems
    assert {p.file for p in found} == {"install.d/50-foo.orig"}


def test_cli_reads_tox_ini_and_ignore_option(tmp_path: Path) -> None:
    project = third_party(tmp_path / "project")
    (project / "elements" / "bar" / "README.rst").unlink()
    argv = [sys.executable, str(REPO / "bin" / "dib-lint"), "--no-shellcheck", "elements"]
    r = subprocess.run(argv, cwd=project, capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["bar:0: readme: no README.rst (say what the element does)"]
    assert "tox.ini: [dib-lint] read" in r.stderr
    r = subprocess.run(
        [*argv, "--ignore", "readme"], cwd=project, capture_output=True, text=True, check=False
    )
    assert (r.returncode, r.stdout) == (0, "")


def test_cli_lists_rules() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / "dib-lint"), "--list-rules"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0
    names = {line.split()[0] for line in r.stdout.splitlines()[:-1]}
    assert names == set(RULES)
    assert "sudo=safe_sudo" in r.stdout


def test_unreadable_tox_ini_is_one_clear_error(tmp_path: Path) -> None:
    project = third_party(tmp_path / "project")
    (project / "tox.ini").write_text("no section header\n")
    with pytest.raises(ConfigError, match="tox.ini: cannot read its .dib-lint. section"):
        lint([project / "elements"], shellcheck=False, cwd=project)


def test_cli_defaults_to_elements_in_the_current_directory(tmp_path: Path) -> None:
    project = third_party(tmp_path / "project")
    (project / "elements" / "bar" / "README.rst").unlink()
    env = {k: v for k, v in os.environ.items() if k != "ELEMENTS_DIR"}
    argv = [sys.executable, str(REPO / "bin" / "dib-lint"), "--no-shellcheck"]
    r = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert r.stdout.startswith("bar:0: readme:")
    assert "dib-lint: 2 elements" in r.stderr


def test_each_tree_keeps_its_own_tox_ini(tmp_path: Path) -> None:
    """The same element name in two trees (one overriding the other) is filtered by its
    own tree's settings; a tox.ini shared by two trees applies to both."""
    one = third_party(tmp_path / "one")
    two = third_party(tmp_path / "two")
    (two / "tox.ini").write_text("[tox]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = lint([one / "elements", two / "elements"], shellcheck=False, cwd=elsewhere).problems
    assert [(p.element, p.file, p.rule) for p in found] == [("bar", "bin/bar-tool", "tabindent")]
    shutil.copytree(one / "elements", one / "more-elements")
    both = [one / "elements", one / "more-elements"]
    assert lint(both, shellcheck=False, cwd=elsewhere).problems == []


def test_cli_ignore_names_must_be_rules(tmp_path: Path) -> None:
    argv = [sys.executable, str(REPO / "bin" / "dib-lint"), str(tmp_path), "--ignore"]
    r = subprocess.run([*argv, "sete,tabindnet"], capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "no rule called 'tabindnet'" in r.stderr and "'tabindent'" in r.stderr
    assert "Traceback" not in r.stderr
    # dibpy's earlier names are rules too
    r = subprocess.run([*argv, "set-e pipefail"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
