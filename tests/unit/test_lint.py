"""dib-lint: each rule on a small synthetic element tree, and the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.cli.lint import main
from dibpy.errors import ConfigError
from dibpy.lint import Problem, lint

REPO = Path(__file__).resolve().parents[2]
GOOD_HOOK = (
    "#!/bin/bash\n"
    "if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi\n"
    "set -eu\n"
    "set -o pipefail\n"
    'echo "hello"\n'
)
HAS_SHELLCHECK = shutil.which("shellcheck") is not None


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def element(root: Path, name: str, files: dict[str, str | tuple[str, int]]) -> Path:
    """An element with a README plus ``files`` (text, or (text, mode))."""
    d = root / name
    write(d / "README.rst", f"{name}\n")
    for rel, spec in files.items():
        text, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        write(d / rel, text, mode)
    return d


def rules(tmp_path: Path, shellcheck: bool = False) -> set[tuple[str, str]]:
    """(file, rule) of every problem found under tmp_path."""
    return {
        (f"{p.element}/{p.file}", p.rule) for p in lint([tmp_path], shellcheck=shellcheck).problems
    }


def test_clean_element_has_no_problems(tmp_path: Path) -> None:
    element(
        tmp_path,
        "good",
        {
            "element-deps": "alpha\nbeta\n",
            "element-provides": "operating-system\n",
            "install.d/10-good": (GOOD_HOOK, 0o755),
            "install.d/ttySx.conf": "resource file\n",
            "install.d/dhcp-interface@.service": "[Unit]\n",
            "environment.d/10-good.bash": "export GOOD=1\n",
            "package-installs.yaml": "vim:\ncurl:\n  phase: install.d\n",
            "pkg-map": '{"family": {"debian": {"vim": "vim-nox"}}}\n',
            "block-device-default.yaml": "- local_loop:\n    name: image0\n",
            "bin/tool": (GOOD_HOOK, 0o755),
        },
    )
    result = lint([tmp_path], shellcheck=HAS_SHELLCHECK)
    assert result.problems == []
    assert result.elements == 1
    assert result.files == 11  # README too


def test_readme_missing(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    (tmp_path / "md").mkdir()
    (tmp_path / "md" / "README.md").write_text("md\n")
    # dibpy accepts README.md; diskimage-builder's mddocs rule still reports it
    assert rules(tmp_path) == {("bare/", "readme"), ("md/README.md", "mddocs")}


def test_hook_names_that_will_not_run(tmp_path: Path) -> None:
    element(
        tmp_path,
        "e",
        {
            "install.d/10-foo.sh": (GOOD_HOOK, 0o755),
            "install.d/20-plain": (GOOD_HOOK, 0o644),
            "install.d/30-plain.sh": (GOOD_HOOK, 0o644),
            "install.d/helper": (GOOD_HOOK, 0o644),
            "install.d/40-data": "not a script\n",
            "install.d/ttySx.conf": "x\n",
            "install.d/dhcp-interface@.service": "x\n",
            # a script a hook copies into the image: executable, but no number
            "install.d/dhcp-all-interfaces.sh": (GOOD_HOOK, 0o755),
            "root.d/50-ok": (GOOD_HOOK, 0o755),
        },
    )
    result = lint([tmp_path], shellcheck=False)
    assert {(p.file, p.rule, p.severity) for p in result.problems} == {
        ("install.d/10-foo.sh", "hook-name", "error"),
        ("install.d/20-plain", "executable", "error"),
        ("install.d/30-plain.sh", "hook-name", "error"),
        ("install.d/30-plain.sh", "executable", "error"),
        ("install.d/helper", "executable", "error"),
        ("install.d/40-data", "hook-skipped", "warning"),
    }


def test_hook_name_problem_says_what_would_run(tmp_path: Path) -> None:
    element(tmp_path, "e", {"finalise.d/10-foo.sh": (GOOD_HOOK, 0o755)})
    (p,) = lint([tmp_path], shellcheck=False).problems
    assert "will not run" in p.message and "'10-foo'" in p.message


def test_install_type_subdirectories_are_phase_dirs(tmp_path: Path) -> None:
    element(
        tmp_path,
        "e",
        {
            "install.d/foo-source-install/10-x": (GOOD_HOOK, 0o644),
            "install.d/foo-source-install/20-y.sh": (GOOD_HOOK, 0o755),
            # data the hooks beside them read: not hooks, whatever their names
            "install.d/foo-source-install/10-dropin.conf": "[Service]\n",
            "install.d/foo-source-install/30-data": "data\n",
            "install.d/foo-source-install/ima-policy": "data\n",
            "install.d/foo-source-install/foo.service": "[Unit]",
        },
    )
    assert rules(tmp_path) == {
        ("e/install.d/foo-source-install/10-x", "executable"),
        ("e/install.d/foo-source-install/20-y.sh", "hook-name"),
    }


def test_environment_d_must_not_be_executable(tmp_path: Path) -> None:
    element(
        tmp_path,
        "e",
        {
            "environment.d/10-x.bash": ("export X=1\n", 0o755),
            "environment.d/20-y": ("export Y=1\n", 0o644),
        },
    )
    assert rules(tmp_path) == {("e/environment.d/10-x.bash", "env-executable")}


def test_environment_d_needs_no_set_eu(tmp_path: Path) -> None:
    element(tmp_path, "e", {"environment.d/10-x.bash": "# sourced\nexport X=1\n"})
    assert rules(tmp_path) == set()
    # a #! line still wants the executable bit, which environment.d must not have: as
    # diskimage-builder, which gives such files a 'dib-lint: disable=executable'
    element(tmp_path, "f", {"environment.d/10-x.bash": "#!/bin/bash\nexport X=1\n"})
    assert rules(tmp_path) == {("f/environment.d/10-x.bash", "executable")}


def test_environment_d_must_not_trace(tmp_path: Path) -> None:
    element(tmp_path, "e", {"environment.d/10-x": "export X=1\nset -x\n"})
    (p,) = lint([tmp_path], shellcheck=False).problems
    assert (p.file, p.line, p.rule) == ("environment.d/10-x", 2, "env-trace")


def test_missing_final_newline(tmp_path: Path) -> None:
    element(
        tmp_path,
        "e",
        {
            "bin/tool": (GOOD_HOOK.rstrip("\n"), 0o755),
            "doc.rst": "text",
            "source-repository-foo": "foo git /opt/foo https://example.com/foo",
            # diskimage-builder does not mind these (its readers take a last line as is)
            "element-deps": "a\nb",
            "static/etc/motd": "hi",
        },
    )
    result = lint([tmp_path], shellcheck=False)
    assert {(p.file, p.rule, p.line) for p in result.problems} == {
        ("bin/tool", "newline", 5),
        ("doc.rst", "newline", 1),
        ("source-repository-foo", "newline", 1),
    }


def test_binary_files_are_not_read_as_text(tmp_path: Path) -> None:
    d = element(tmp_path, "e", {})
    (d / "static").mkdir()
    (d / "static" / "blob").write_bytes(b"\x00\x01\x02")
    assert rules(tmp_path) == set()


@pytest.mark.parametrize("name", ["element-deps", "element-provides", "element-conflicts"])
def test_name_lists_sorted_and_unique(tmp_path: Path, name: str) -> None:
    element(tmp_path, "e", {name: "# comment\nbeta\nalpha\n\nbeta\n"})
    result = lint([tmp_path], shellcheck=False)
    # only element-deps has to be sorted, as in diskimage-builder
    expected = [("sorted", 3), ("duplicate", 5)] if name == "element-deps" else [("duplicate", 5)]
    assert [(p.rule, p.line) for p in result.problems] == expected
    if name == "element-deps":
        assert "'alpha' should come before 'beta'" in result.problems[0].message


@pytest.mark.parametrize("deps", ["ab-c\nabb\n", "abb\nab-c\n", "Zed\nalpha\n"])
def test_element_deps_sorted_in_c_or_dictionary_order(tmp_path: Path, deps: str) -> None:
    element(tmp_path, "e", {"element-deps": deps})
    assert rules(tmp_path) == set()


@pytest.mark.parametrize(
    ("name", "text", "rule", "line"),
    [
        ("package-installs.yaml", "vim:\n  phase: [\n", "yaml", 3),
        ("package-installs.json", '{"vim": \n', "json", 2),
        ("pkg-map", "{'single': 'quotes'}\n", "json", 1),
        ("block-device-default.yaml", "- a: b\n c: :\n", "yaml", 2),
        ("block-device-amd64.yaml", "key: [1, 2\n", "yaml", 2),
    ],
)
def test_invalid_data_files(tmp_path: Path, name: str, text: str, rule: str, line: int) -> None:
    element(tmp_path, "e", {name: text})
    (p,) = lint([tmp_path], shellcheck=False).problems
    assert (p.file, p.rule, p.line) == (name, rule, line)


def test_shebang_required_for_hooks_and_bin(tmp_path: Path) -> None:
    element(
        tmp_path,
        "e",
        {
            "install.d/10-x": ("set -eu\necho hi\n", 0o755),
            "bin/tool": ("echo hi\n", 0o755),
            "static/etc/profile.d/x.sh": "export A=1\n",
        },
    )
    result = lint([tmp_path], shellcheck=False)
    assert {(p.file, p.rule, p.severity) for p in result.problems} == {
        ("install.d/10-x", "shebang", "warning"),
        ("bin/tool", "shebang", "warning"),
    }


@pytest.mark.parametrize(
    "header",
    [
        "set -eu\nset -o pipefail\n",
        "set -eu -o pipefail\n",
        "set -euo pipefail\n",
        "set -o errexit\nset -o nounset\nset -o pipefail\n",
        "set -o errexit -o nounset -o pipefail\n",
        "set -e\nset -u\nset -o pipefail\n",
        "set -eux -o pipefail\n",
        "    set -eu\n    set -o pipefail\n",
        "true; set -eu; set -o pipefail\n",
    ],
)
def test_set_eu_pipefail_spellings_accepted(tmp_path: Path, header: str) -> None:
    hook = "#!/bin/bash\nif [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi\n" + header
    element(tmp_path, "e", {"install.d/10-x": (hook + "echo hi\n", 0o755)})
    assert rules(tmp_path) == set()


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("", {"sete", "setu", "setpipefail"}),
        ("set -e\n", {"setu", "setpipefail"}),
        ("set -eu\n", {"setpipefail"}),
        ("set -o pipefail\n", {"sete", "setu"}),
        ("# set -eu -o pipefail\n", {"sete", "setu", "setpipefail"}),
        ("echo set -eu -o pipefail\n", {"sete", "setu", "setpipefail"}),
    ],
)
def test_set_eu_pipefail_missing(tmp_path: Path, header: str, missing: set[str]) -> None:
    hook = "#!/bin/bash\nif [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then set -x; fi\n" + header
    element(tmp_path, "e", {"install.d/10-x": (hook + "echo hi\n", 0o755)})
    assert {r for _, r in rules(tmp_path)} == missing


def test_only_bash_scripts_need_set_eu_pipefail(tmp_path: Path) -> None:
    # as in diskimage-builder: sh scripts (sysv init scripts, dracut modules) may not want it
    element(
        tmp_path,
        "e",
        {
            "bin/a": ("#!/bin/sh\necho a\n", 0o755),
            "install.d/e.init": ("#!/bin/sh -e\necho b\n", 0o755),
        },
    )
    assert rules(tmp_path) == set()


def test_bash_is_spelled_bin_bash(tmp_path: Path) -> None:
    element(tmp_path, "e", {"bin/a": ("#!/usr/bin/env bash\nset -eu\necho a\n", 0o755)})
    assert rules(tmp_path) == {("e/bin/a", "binbash"), ("e/bin/a", "setpipefail")}


def test_debug_trace_is_a_warning_for_hooks_only(tmp_path: Path) -> None:
    body = "#!/bin/bash\nset -eu -o pipefail\necho hi\n"
    element(tmp_path, "e", {"root.d/10-x": (body, 0o755), "bin/tool": (body, 0o755)})
    result = lint([tmp_path], shellcheck=False)
    (p,) = result.problems
    assert (p.file, p.rule, p.severity) == ("root.d/10-x", "dibdebugtrace", "warning")
    assert result.errors == []
    assert main([str(tmp_path), "--no-shellcheck"]) == 0


@pytest.mark.parametrize(
    ("phase", "line", "flagged"),
    [
        ("root.d", "sudo rm -rf /tmp/x", True),
        ("cleanup.d", "echo x | sudo tee /etc/x", True),
        ("block-device.d", "if true; then sudo ls; fi", True),
        ("finalise.d", "x=$(sudo cat /etc/shadow)", True),
        ("extra-data.d", "sudo cp x $TMP_MOUNT_PATH/etc/", False),
        ("root.d", 'sudo mkdir -p "${TARGET_ROOT}/x"', False),
        ("root.d", "sudo touch \\\n    $TARGET_ROOT/x", False),
        ("root.d", "sudo ls /  # dib-lint: safe_sudo", False),
        ("root.d", "install-packages sudo", False),
        ("root.d", "# sudo in a comment", False),
        ("root.d", "cp sudoers /etc/sudoers.d/x", False),
        # inside the chroot, sudo is harmless (and diskimage-builder does not look)
        ("install.d", "sudo rm -rf /tmp/x", False),
        ("post-install.d", "sudo ls", False),
    ],
)
def test_safe_sudo(tmp_path: Path, phase: str, line: str, flagged: bool) -> None:
    element(tmp_path, "e", {f"{phase}/10-x": (GOOD_HOOK + line + "\n", 0o755)})
    problems = lint([tmp_path], shellcheck=False).problems
    assert [(p.rule, p.line) for p in problems] == ([("safe_sudo", 6)] if flagged else [])


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("which qemu-img", True),
        ("if which dot >/dev/null; then :; fi", True),
        ("DOT=$(which dot)", True),
        ("command -v dot", False),
        ("type -p dot", False),
        ("echo 'which one?'", False),
        ("which dot  # dib-lint: which", False),
    ],
)
def test_which(tmp_path: Path, line: str, flagged: bool) -> None:
    element(tmp_path, "e", {"install.d/10-x": (GOOD_HOOK + line + "\n", 0o755)})
    problems = lint([tmp_path], shellcheck=False).problems
    assert [(p.rule, p.line) for p in problems] == ([("which", 6)] if flagged else [])


def test_python_hooks_must_compile(tmp_path: Path) -> None:
    element(
        tmp_path,
        "e",
        {
            "install.d/10-py": ("#!/usr/bin/env python3\nprint('ok')\n", 0o755),
            "install.d/20-py": ("#!/usr/bin/python3\ndef f(:\n    pass\n", 0o755),
            "static/usr/lib/x.py": "x = (\n",
        },
    )
    result = lint([tmp_path], shellcheck=False)
    assert {(p.file, p.rule, p.line) for p in result.problems} == {
        ("install.d/20-py", "python-syntax", 2),
        ("static/usr/lib/x.py", "python-syntax", 1),
    }


def test_disable_comment(tmp_path: Path) -> None:
    # diskimage-builder's spelling: space-separated, its rule names
    hook = "#!/bin/bash\n# dib-lint: disable=sete setu setpipefail\nsudo ls\nwhich ls\n"
    # commas, and dibpy's earlier names, work too
    hook2 = "#!/bin/bash\n# dib-lint: disable=sudo,which\nsudo ls\nwhich ls\n"
    element(tmp_path, "e", {"root.d/10-a": (hook, 0o755), "root.d/20-b": (hook2, 0o755)})
    assert rules(tmp_path) == {
        ("e/root.d/10-a", "safe_sudo"),
        ("e/root.d/10-a", "which"),
        ("e/root.d/10-a", "dibdebugtrace"),
        ("e/root.d/20-b", "sete"),
        ("e/root.d/20-b", "setu"),
        ("e/root.d/20-b", "setpipefail"),
        ("e/root.d/20-b", "dibdebugtrace"),
    }


def test_test_elements_are_linted_as_elements(tmp_path: Path) -> None:
    d = element(tmp_path, "e", {})
    (d / "test-elements" / "t1").mkdir(parents=True)
    write(d / "test-elements" / "t1" / "install.d" / "10-x.sh", GOOD_HOOK, 0o755)
    # no README needed for a test element (diskimage-builder's own have none)
    assert rules(tmp_path) == {("e/test-elements/t1/install.d/10-x.sh", "hook-name")}


def test_ramdisk_data_dirs_are_not_hook_dirs(tmp_path: Path) -> None:
    element(
        tmp_path,
        "e",
        {
            "binary-deps.d/e": "ls\n",
            "init.d/10-net": "echo net\n",
            "udev.d/70-x.rules": "x\n",
            "ramdisk-install.d/10-x": (GOOD_HOOK, 0o644),
        },
    )
    assert rules(tmp_path) == {("e/ramdisk-install.d/10-x", "executable")}


@pytest.mark.skipif(not HAS_SHELLCHECK, reason="shellcheck is not installed")
def test_shellcheck_findings(tmp_path: Path) -> None:
    bad = GOOD_HOOK + "source $TMP_HOOKS_PATH/x\necho $undefined_thing\ncd /tmp\n"
    element(
        tmp_path,
        "e",
        {
            "install.d/10-x": (bad, 0o755),
            "environment.d/10-x.bash": "FOO=1\n",
        },
    )
    result = lint([tmp_path], shellcheck=True)
    codes = {(p.file, p.line, p.message.split(":")[0]) for p in result.problems}
    # SC2154: referenced but not assigned; SC1090/SC1091 and env SC2034 are excluded
    assert ("install.d/10-x", 7, "SC2154") in codes
    assert all(p.rule == "shellcheck" for p in result.problems)
    assert not any(c[2] in ("SC1090", "SC1091", "SC2034") for c in codes)
    # and it can be turned off per file
    write(tmp_path / "e/install.d/10-x", bad + "# dib-lint: disable=shellcheck\n", 0o755)
    assert lint([tmp_path], shellcheck=True).problems == []


def test_problem_format() -> None:
    p = Problem("el", "install.d/10-x", 3, "sudo", "runs sudo")
    assert str(p) == "el/install.d/10-x:3: sudo: runs sudo"
    w = Problem("el", "", 0, "debug-trace", "x", "warning")
    assert str(w) == "el:0: debug-trace: warning: x"


def test_missing_dir_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found: .*nope"):
        lint([tmp_path / "nope"])


def test_several_dirs(tmp_path: Path) -> None:
    element(tmp_path / "a", "one", {})
    (tmp_path / "b" / "two").mkdir(parents=True)
    result = lint([tmp_path / "a", tmp_path / "b"], shellcheck=False)
    assert result.elements == 2
    assert [p.element for p in result.problems] == ["two"]


# ---------------------------------------------------------------- the command


def dib_lint(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ELEMENTS_DIR", None) if env is None or "ELEMENTS_DIR" not in env else None
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "dib-lint"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def test_cli_reports_and_exits_1(tmp_path: Path) -> None:
    element(tmp_path, "e", {"install.d/10-x.sh": (GOOD_HOOK, 0o755), "element-deps": "b\na\n"})
    r = dib_lint(str(tmp_path), "--no-shellcheck")
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "e/element-deps:2: sorted: 'a' should come before 'b'",
        "e/install.d/10-x.sh:0: hook-name: will not run: its name has '.': only letters, "
        "digits, '-' and '_' run (rename it to '10-x')",
    ]
    assert "1 elements, 3 files: 2 errors, 0 warnings" in r.stderr


def test_cli_clean_exits_0(tmp_path: Path) -> None:
    element(tmp_path, "e", {"install.d/10-x": (GOOD_HOOK, 0o755)})
    r = dib_lint(str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""


def test_cli_honours_elements_dir_env(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    r = dib_lint("--no-shellcheck", env={"ELEMENTS_DIR": str(tmp_path)})
    assert r.returncode == 1
    assert r.stdout.startswith("bare:0: readme:")


def test_cli_missing_dir(tmp_path: Path) -> None:
    r = dib_lint(str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "dib-lint: error: elements directory not found" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 2  # the message and its hint


def test_cli_quiet_hides_warnings(tmp_path: Path) -> None:
    element(tmp_path, "e", {"root.d/10-x": ("#!/bin/bash\nset -eu -o pipefail\n", 0o755)})
    assert dib_lint(str(tmp_path), "--no-shellcheck").stdout.count("dibdebugtrace") == 1
    assert dib_lint(str(tmp_path), "--no-shellcheck", "-q").stdout == ""


def test_cli_defaults_to_the_builtin_library(tmp_path: Path) -> None:
    from dibpy.elements import builtin_elements_dir

    count = sum(1 for p in builtin_elements_dir().iterdir() if p.is_dir())
    r = dib_lint("--no-shellcheck", cwd=tmp_path)  # no elements/ here
    assert f"dib-lint: {count} elements" in r.stderr, r.stderr


def test_python_is_found_by_the_shebang_only(tmp_path: Path) -> None:
    # a shell fragment that mentions dib-python on its first line is not Python
    element(
        tmp_path,
        "e",
        {
            "environment.d/10-e.bash": "# set up after dib-python\nE_DIR=${E_DIR:-/opt/e}\n",
            "install.d/10-py": ("#!/usr/local/bin/dib-python\nif True\n", 0o755),
            "install.d/20-py": ("#!/usr/bin/env dib-python\nprint('ok')\n", 0o755),
        },
    )
    assert rules(tmp_path) == {("e/install.d/10-py", "python-syntax")}
