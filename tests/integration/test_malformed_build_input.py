"""The malformed-input corpus, part two: inputs and faults found only once a build runs.

Each case runs the venv's real ``disk-image-create`` on the tiny-os fixture (the host's
bash and coreutils: no network, seconds a build) and checks what the user sees: non-zero
exit, exactly one error line naming the culprit, no traceback, and nothing left behind
(an empty TMP_DIR, no NAME.d or partial image, no mount or loop device, no process).
The cases that need a read-only or full filesystem get a small tmpfs of their own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dibpy.mounts import processes_using
from tests.conftest import REPO, chroot_works, loops_under, mounts_under

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [str(Path(sys.executable).parent / "disk-image-create")]
if not Path(DIC[0]).exists():
    DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


@dataclass(frozen=True)
class Case:
    """``{tmp}`` is the case's directory; ``tmpfs`` mounts a small tmpfs (relative path ->
    mount options) before the build; ``hooks`` are element files made executable."""

    id: str
    args: tuple[str, ...]
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    tmpfs: dict[str, str] = field(default_factory=dict)
    also: str = ""


def hook(body: str) -> str:
    return "#!/bin/bash\nset -eu\n" + body


CASES = [
    Case(
        "output-in-a-read-only-directory",
        ("-o", "{tmp}/ro/img", "tiny-os"),
        "-o {tmp}/ro/img: {tmp}/ro is not writable (a read-only filesystem)",
        tmpfs={"ro": "ro,size=1m"},
    ),
    Case(
        "logfile-in-a-read-only-directory",
        ("-o", "{tmp}/out/img", "--logfile", "{tmp}/ro/log", "tiny-os", "no-final-image"),
        "--logfile {tmp}/ro/log: {tmp}/ro is not writable",
        tmpfs={"ro": "ro,size=1m"},
    ),
    Case(
        "tmp-dir-out-of-inodes",
        ("--no-tmpfs", "-o", "{tmp}/out/img", "tiny-os", "no-final-image"),
        "No space left on device",
        env={"TMP_DIR": "{tmp}/small"},
        tmpfs={"small": "size=4m,nr_inodes=8"},
        also="TMP_DIR",
    ),
    Case(
        "tmp-dir-out-of-space",
        ("--no-tmpfs", "-o", "{tmp}/out/img", "tiny-os", "big-hooks", "no-final-image"),
        "No space left on device",
        env={"TMP_DIR": "{tmp}/small"},
        tmpfs={"small": "size=256k"},
        files={"elements/big-hooks/static/big": "x" * 400_000},
        also="TMP_DIR",
    ),
    Case(
        "hook-killed-by-sigkill-on-the-host",
        ("-o", "{tmp}/out/img", "tiny-os", "killer", "no-final-image"),
        "hook root.d/50-killed of element killer was killed by SIGKILL",
        files={"elements/killer/root.d/50-killed": hook("kill -KILL $$\n")},
    ),
    Case(
        "hook-killed-by-sigkill-in-the-chroot",
        ("-o", "{tmp}/out/img", "tiny-os", "killer", "no-final-image"),
        "hook install.d/50-killed of element killer was killed by SIGKILL",
        files={"elements/killer/install.d/50-killed": hook("kill -KILL $$\n")},
    ),
    Case(
        "hook-whose-child-is-killed",
        ("-o", "{tmp}/out/img", "tiny-os", "killer", "no-final-image"),
        "hook install.d/50-killed of element killer failed with exit status 137 (128+SIGKILL",
        files={"elements/killer/install.d/50-killed": hook("bash -c 'kill -KILL $$'\n")},
    ),
    Case(
        "environment-d-syntax-error",
        ("-o", "{tmp}/out/img", "tiny-os", "envbad", "no-final-image"),
        "environment file environment.d/10-bad.bash of element envbad, sourced for hook root.d",
        files={"elements/envbad/environment.d/10-bad.bash": "export X=$(\n"},
    ),
    Case(
        "hook-mounts-in-the-tree-then-fails",
        ("-o", "{tmp}/out/img", "tiny-os", "mounter", "no-final-image"),
        "hook root.d/50-mount of element mounter failed with exit status 3",
        files={
            "elements/mounter/root.d/50-mount": hook(
                'mkdir -p "$TARGET_ROOT/mnt/x"\nmount -t tmpfs tmpfs "$TARGET_ROOT/mnt/x"\n'
                'mount --bind /usr "$TARGET_ROOT/mnt/x"\nexit 3\n'
            )
        },
    ),
    Case(
        "hook-leaves-a-process-then-fails",
        ("-o", "{tmp}/out/img", "tiny-os", "leaver", "no-final-image"),
        "hook install.d/50-leave of element leaver failed with exit status 4",
        files={"elements/leaver/install.d/50-leave": hook("(sleep 300 &)\nexit 4\n")},
    ),
    Case(
        "two-elements-ship-one-hook",
        ("-o", "{tmp}/out/img", "tiny-os", "twin-a", "twin-b", "no-final-image"),
        "install.d/50-same is in two elements",
        files={
            "elements/twin-a/install.d/50-same": hook("true\n"),
            "elements/twin-b/install.d/50-same": hook("true\n"),
        },
    ),
    Case(
        "output-write-fails-disk-full",
        ("-t", "raw", "-o", "{tmp}/full/img", "tiny-os"),
        "{tmp}/full/img.raw",
        tmpfs={"full": "size=2m"},
    ),
]


@contextlib.contextmanager
def _tmpfs(tmp: Path, mounts: dict[str, str]) -> Iterator[None]:
    done = []
    try:
        for rel, opts in mounts.items():
            (tmp / rel).mkdir(parents=True)
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(tmp / rel)], check=True
            )
            done.append(tmp / rel)
        yield
    finally:
        for p in reversed(done):
            subprocess.run(["umount", str(p)], check=False)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_build_time_malformed_input(case: Case, tmp_path: Path, no_leaks: None) -> None:
    tmp = tmp_path
    sub = lambda s: s.replace("{tmp}", str(tmp))  # noqa: E731
    (tmp / "tmp").mkdir()
    (tmp / "elements").mkdir()
    for rel, text in case.files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if "/static/" not in rel and not rel.split("/")[-2].endswith("environment.d"):
            p.chmod(0o755)
        readme = tmp / "elements" / rel.split("/")[1] / "README.rst"
        readme.write_text("a test element\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=f"{tmp}/elements:{FIXTURES}",
        TMP_DIR=str(tmp / "tmp"),
        DIB_IMAGE_CACHE=str(tmp / "cache"),
        DIB_NO_CACHE="1",
    )
    env.update({k: sub(v) for k, v in case.env.items()})
    with _tmpfs(tmp, case.tmpfs):
        before = _files(tmp) - _files(tmp / "cache")
        r = subprocess.run(
            [*DIC, "-n", *(sub(a) for a in case.args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp,
        )
        text = r.stdout + r.stderr
        left = {p for p in _files(tmp) - before if not p.startswith("cache")}
        tmp_dir = Path(env["TMP_DIR"])
        in_tmp = _files(tmp_dir)
        assert r.returncode != 0, text
        assert "Traceback" not in text, text
        errors = [ln for ln in text.splitlines() if "error:" in ln.lower()]
        # a hook's own output may say "error:"; ours is the line that starts the report
        ours = [ln for ln in errors if ln.startswith("disk-image-create: error:")]
        assert len(ours) == 1, f"want one error line, got:\n{text}"
        assert sub(case.expect) in ours[0], text
        if case.also:
            assert case.also in text, text
        assert in_tmp == set(), f"left in TMP_DIR: {sorted(in_tmp)}"
        assert left == set(), f"left behind: {sorted(left)}"
        assert not loops_under(tmp) and not mounts_under(tmp) - {str(tmp / m) for m in case.tmpfs}
        assert processes_using(tmp) == []


def test_the_corpus_together_is_at_least_60_cases() -> None:
    from tests.unit.test_malformed_input import CASES as UNIT_CASES

    assert len(UNIT_CASES) + len(CASES) >= 60
