"""The hook tree: merging, run-parts ordering and naming, environment.d, failures, timings.

Hooks are real scripts run by bash on the host (no chroot), so these need no root.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dibpy.elements.model import Element
from dibpy.errors import HookError, MultiError
from dibpy.hooks import (
    ORIGINS_FILE,
    environment_files,
    merge_hooks,
    run_phase,
    scan_dir,
    sort_key,
)

HEADER = "#!/bin/bash\nset -eu -o pipefail\n"


def write(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def element(root: Path, name: str, files: dict[str, str | tuple[str, int]]) -> Element:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for rel, spec in files.items():
        text, mode = spec if isinstance(spec, tuple) else (spec, 0o755)
        write(d / rel, text, mode)
    return Element(name, d)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, level: int = logging.DEBUG) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)


@pytest.fixture
def dib_log() -> Iterator[ListHandler]:
    """Everything logged on the 'dibpy' logger (which may not propagate to caplog)."""
    logger = logging.getLogger("dibpy")
    handler = ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def base_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "OUT": str(tmp_path / "out.log")}


# ---------------------------------------------------------------- merging


def test_merge_copies_subdirectories_not_tests_or_top_level(tmp_path: Path) -> None:
    a = element(
        tmp_path / "src",
        "a",
        {
            "install.d/10-a": HEADER,
            "environment.d/10-a.bash": ("export A=1\n", 0o644),
            "static/etc/a.conf": ("a\n", 0o644),
            "tests/check": HEADER,
            "element-deps": ("b\n", 0o644),
        },
    )
    (a.path / "finalise.d").mkdir()
    os.symlink("../install.d/10-a", a.path / "static" / "link")
    tree = merge_hooks([a], tmp_path / "hooks")
    root = tree.root
    assert (root / "install.d" / "10-a").read_text() == HEADER
    assert os.access(root / "install.d" / "10-a", os.X_OK)
    assert (root / "environment.d" / "10-a.bash").is_file()
    assert (root / "static" / "etc" / "a.conf").is_file()
    assert os.readlink(root / "static" / "link") == "../install.d/10-a"
    assert (root / "finalise.d").is_dir()  # an empty phase dir is kept
    assert not (root / "tests").exists()
    assert not (root / "element-deps").exists()
    assert tree.origins["install.d/10-a"] == "a"
    assert json.loads((root / ORIGINS_FILE).read_text()) == tree.origins


def test_merge_clash_names_both_paths_and_all_clashes(tmp_path: Path) -> None:
    a = element(tmp_path, "a", {"install.d/10-x": HEADER, "root.d/10-r": HEADER})
    b = element(tmp_path, "b", {"install.d/10-x": HEADER, "root.d/10-r": HEADER})
    c = element(tmp_path, "c", {"install.d/20-y": HEADER})
    with pytest.raises(MultiError) as e:
        merge_hooks([a, b, c], tmp_path / "hooks")
    assert e.value.problems == [
        f"install.d/10-x is in two elements: {a.path / 'install.d/10-x'} and "
        f"{b.path / 'install.d/10-x'}",
        f"root.d/10-r is in two elements: {a.path / 'root.d/10-r'} and {b.path / 'root.d/10-r'}",
    ]
    assert e.value.hint


def test_merge_same_directory_different_files_is_fine(tmp_path: Path) -> None:
    a = element(tmp_path, "a", {"install.d/10-a": HEADER})
    b = element(tmp_path, "b", {"install.d/20-b": HEADER})
    tree = merge_hooks([a, b], tmp_path / "hooks")
    assert tree.phase_origins("install.d") == {"10-a": "a", "20-b": "b"}


# ---------------------------------------------------------------- which hooks run, in what order


def test_sort_key_matches_lang_c_sort_n() -> None:
    names = ["10-a", "9-b", "100-c", "foo", "01-x", "1-y", "05-z", "5-a", "_x", "A", "a", "0-q"]
    expected = subprocess.run(
        ["sort", "-n"],
        input="\n".join(names) + "\n",
        capture_output=True,
        text=True,
        env={"LC_ALL": "C", "PATH": os.environ["PATH"]},
        check=True,
    ).stdout.split()
    assert sorted(names, key=sort_key) == expected


def test_order_across_elements(tmp_path: Path) -> None:
    a = element(tmp_path, "a", {"install.d/10-a": HEADER, "install.d/100-a": HEADER})
    b = element(tmp_path, "b", {"install.d/9-b": HEADER, "install.d/plain": HEADER})
    c = element(tmp_path, "c", {"install.d/50-c": HEADER, "install.d/01-c": HEADER})
    tree = merge_hooks([a, b, c], tmp_path / "hooks")
    scan = tree.scan("install.d")
    assert [(h.name, h.element) for h in scan.hooks] == [
        ("plain", "b"),
        ("01-c", "c"),
        ("9-b", "b"),
        ("10-a", "a"),
        ("50-c", "c"),
        ("100-a", "a"),
    ]


def test_only_valid_executable_names_run(tmp_path: Path) -> None:
    d = tmp_path / "install.d"
    write(d / "10-ok", HEADER)
    write(d / "20_ok_too", HEADER)
    write(d / "10-foo.sh", HEADER)
    write(d / "30-noexec", HEADER, 0o644)
    write(d / "helper", HEADER, 0o644)
    write(d / "ttySx.conf", "x\n", 0o644)
    write(d / "dhcp-interface@.service", "x\n", 0o644)
    (d / "subdir").mkdir()
    scan = scan_dir(d)
    assert [h.name for h in scan.hooks] == ["10-ok", "20_ok_too"]
    assert sorted(p.name for p, _ in scan.skipped) == ["10-foo.sh", "30-noexec"]
    reasons = {p.name: r for p, r in scan.skipped}
    assert "'.'" in reasons["10-foo.sh"] and "'10-foo'" in reasons["10-foo.sh"]
    assert "not executable" in reasons["30-noexec"]


def test_run_phase_warns_about_hooks_that_will_not_run(
    tmp_path: Path, dib_log: ListHandler
) -> None:
    a = element(
        tmp_path,
        "a",
        {
            "install.d/10-foo.sh": HEADER,
            "install.d/20-noexec": (HEADER, 0o644),
            "install.d/ttySx.conf": ("x\n", 0o644),
            "install.d/30-runs": HEADER + 'echo ran >> "$OUT"\n',
        },
    )
    tree = merge_hooks([a], tmp_path / "hooks")
    run_phase(tree, "install.d", base_env(tmp_path))
    warnings = [r.getMessage() for r in dib_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("install.d/10-foo.sh (element a) will not run: ")
    assert warnings[1].startswith("install.d/20-noexec (element a) will not run: ")
    assert "ttySx" not in dib_log.text()
    assert (tmp_path / "out.log").read_text() == "ran\n"


# ---------------------------------------------------------------- running


def test_hooks_run_in_order_with_args(tmp_path: Path) -> None:
    a = element(tmp_path, "a", {"root.d/10-a": HEADER + 'echo "a $*" >> "$OUT"\n'})
    b = element(tmp_path, "b", {"root.d/05-b": HEADER + 'echo "b $*" >> "$OUT"\n'})
    tree = merge_hooks([a, b], tmp_path / "hooks")
    timing = run_phase(tree, "root.d", base_env(tmp_path), args=["/target", "x y"])
    assert (tmp_path / "out.log").read_text() == "b /target x y\na /target x y\n"
    assert [n for n, _ in timing.timings] == ["05-b", "10-a"]


def test_environment_d_sourced_before_each_hook_and_nothing_persists(tmp_path: Path) -> None:
    a = element(
        tmp_path,
        "a",
        {
            "environment.d/10-first.bash": ("export FIRST=one\nexport SHARED=env\n", 0o644),
            # a later file sees the earlier one's variables; dots are fine in env names
            "environment.d/20-second.sh": ('export SECOND="$FIRST-two"\n', 0o644),
            "install.d/10-change": HEADER
            + 'echo "10 $FIRST $SECOND $SHARED ${HOOK_VAR:-unset}" >> "$OUT"\n'
            + "export SHARED=changed HOOK_VAR=set\n",
            "install.d/20-look": HEADER
            + 'echo "20 $FIRST $SECOND $SHARED ${HOOK_VAR:-unset}" >> "$OUT"\n',
        },
    )
    tree = merge_hooks([a], tmp_path / "hooks")
    assert [p.name for p in tree.environment_files()] == ["10-first.bash", "20-second.sh"]
    run_phase(tree, "install.d", base_env(tmp_path))
    assert (tmp_path / "out.log").read_text().splitlines() == [
        "10 one one-two env unset",
        "20 one one-two env unset",
    ]


def test_hook_sees_only_the_given_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIBPY_TEST_LEAK", "leaked")
    a = element(
        tmp_path,
        "a",
        {"root.d/10-a": HEADER + 'echo "${DIBPY_TEST_LEAK:-clean} $LC_ALL $MINE" >> "$OUT"\n'},
    )
    tree = merge_hooks([a], tmp_path / "hooks")
    run_phase(tree, "root.d", {**base_env(tmp_path), "MINE": "given"})
    assert (tmp_path / "out.log").read_text() == "clean C given\n"


def test_hook_stdin_is_closed(tmp_path: Path) -> None:
    a = element(
        tmp_path,
        "a",
        {
            "root.d/10-a": HEADER
            + 'if read -r line; then echo "got $line"; else echo eof; fi >> "$OUT"\n'
        },
    )
    tree = merge_hooks([a], tmp_path / "hooks")
    run_phase(tree, "root.d", base_env(tmp_path))
    assert (tmp_path / "out.log").read_text() == "eof\n"


def test_environment_d_error_fails_the_hook(tmp_path: Path) -> None:
    a = element(
        tmp_path,
        "a",
        {
            "environment.d/10-bad.bash": ("export X=$NOT_SET_ANYWHERE\n", 0o644),
            "root.d/10-a": HEADER + 'echo ran >> "$OUT"\n',
        },
    )
    tree = merge_hooks([a], tmp_path / "hooks")
    with pytest.raises(HookError, match="NOT_SET_ANYWHERE"):
        run_phase(tree, "root.d", base_env(tmp_path))
    assert not (tmp_path / "out.log").exists()


def test_failing_hook_error_names_everything(tmp_path: Path) -> None:
    lines = "".join(f"echo line-{i}\n" for i in range(30))
    a = element(tmp_path, "a", {"install.d/10-ok": HEADER})
    b = element(
        tmp_path,
        "b",
        {
            "install.d/20-fails": HEADER + lines + "echo to-stderr >&2\nexit 7\n",
            "install.d/30-never": HEADER + 'echo ran >> "$OUT"\n',
        },
    )
    tree = merge_hooks([a, b], tmp_path / "hooks")
    with pytest.raises(HookError) as e:
        run_phase(tree, "install.d", base_env(tmp_path))
    msg = e.value.message
    assert msg.startswith("hook install.d/20-fails of element b failed with exit status 7")
    assert "  | line-29\n  | to-stderr" in msg
    assert "line-29" in msg and "line-5\n" not in msg  # only the tail
    # the hint points at the file in the element, not at the merged copy
    assert e.value.hint and str(b.path / "install.d" / "20-fails") in e.value.hint
    assert not (tmp_path / "out.log").exists()


def test_timing_table_logged(tmp_path: Path, dib_log: ListHandler) -> None:
    a = element(
        tmp_path,
        "a",
        {"post-root.d/10-quick": HEADER, "post-root.d/20-slow": HEADER + "sleep 0.3\n"},
    )
    tree = merge_hooks([a], tmp_path / "hooks")
    timing = run_phase(tree, "post-root.d", base_env(tmp_path))
    times = dict(timing.timings)
    assert times["20-slow"] >= 0.3
    assert times["10-quick"] < times["20-slow"]
    table = timing.table()
    assert table.splitlines()[0] == "post-root.d timings:"
    assert "20-slow" in table and table.splitlines()[-1].lstrip().startswith("total")
    assert table in dib_log.text(logging.INFO)


def test_hook_output_is_logged_as_it_comes(tmp_path: Path, dib_log: ListHandler) -> None:
    a = element(tmp_path, "a", {"root.d/10-a": HEADER + "echo hello-out\necho hello-err >&2\n"})
    tree = merge_hooks([a], tmp_path / "hooks")
    run_phase(tree, "root.d", base_env(tmp_path))
    text = dib_log.text(logging.INFO)
    assert "root.d/10-a: hello-out" in text
    assert "root.d/10-a: hello-err" in text


def test_environment_files_order_and_names(tmp_path: Path) -> None:
    d = tmp_path / "environment.d"
    for name in ("20-b.bash", "10-a", "100-c.sh", ".hidden", "bad name", "03-z"):
        write(d / name, "true\n", 0o644)
    # like diskimage-builder's dib-run-parts, any name of [0-9A-Za-z_.-] is sourced, even
    # a dotfile; sort -n puts it (no number, '.' before digits) first
    assert [p.name for p in environment_files(d)] == [
        ".hidden",
        "03-z",
        "10-a",
        "20-b.bash",
        "100-c.sh",
    ]
    assert environment_files(tmp_path / "missing") == []


def test_a_hook_killed_by_a_signal_names_element_hook_and_signal(tmp_path: Path) -> None:
    b = element(tmp_path, "b", {"install.d/20-killed": HEADER + "echo bye\nkill -KILL $$\n"})
    tree = merge_hooks([b], tmp_path / "hooks")
    with pytest.raises(HookError) as e:
        run_phase(tree, "install.d", base_env(tmp_path))
    msg = e.value.message
    assert msg.startswith("hook install.d/20-killed of element b was killed by SIGKILL"), msg
    assert "  | bye" in msg


def test_a_failing_environment_file_is_blamed_not_the_hook(tmp_path: Path) -> None:
    a = element(tmp_path, "a", {"install.d/10-ok": HEADER})
    b = element(tmp_path, "b", {"environment.d/10-bad.bash": ("export X=$(\n", 0o644)})
    tree = merge_hooks([a, b], tmp_path / "hooks")
    with pytest.raises(HookError) as e:
        run_phase(tree, "install.d", base_env(tmp_path))
    msg = e.value.message
    assert msg.startswith(
        "environment file environment.d/10-bad.bash of element b, sourced for hook "
        "install.d/10-ok of element a, failed with exit status"
    ), msg
    assert e.value.hint and str(b.path / "environment.d" / "10-bad.bash") in e.value.hint


def test_a_hook_name_clash_fails_the_plan_before_any_resource_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dibpy import build as build_mod
    from dibpy.config import build_config
    from tests.conftest import write

    els = tmp_path / "els"
    write(els / "myos" / "element-provides", "operating-system\n")
    for twin in ("twin-a", "twin-b"):
        write(els / twin / "install.d" / "50-same", HEADER, 0o755)
    (tmp_path / "tmp").mkdir()
    cfg = build_config(
        {"output": str(tmp_path / "out" / "img"), "skip_base": True},
        ["myos", "twin-a", "twin-b", "no-final-image"],
        {"ELEMENTS_PATH": str(els), "TMP_DIR": str(tmp_path / "tmp"), "PATH": os.environ["PATH"]},
    )
    # Build.run makes the build directory (and, later, loop devices) first thing: the
    # clash must be found before it is reached (merge_hooks would find it only then)
    monkeypatch.setattr(build_mod.Build, "run", lambda self: pytest.fail("Build.run reached"))
    with pytest.raises(MultiError) as e:
        build_mod.build(cfg)
    assert e.value.problems == [
        f"install.d/50-same is in two elements: {els / 'twin-a/install.d/50-same'} and "
        f"{els / 'twin-b/install.d/50-same'}"
    ]
    assert e.value.hint and "rename one" in e.value.hint
    assert list((tmp_path / "tmp").iterdir()) == []
