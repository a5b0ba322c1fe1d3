"""dib-run-parts DIR and dib-run-parts --list DIR, run as the command (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADER = "#!/bin/bash\nset -eu -o pipefail\n"


def write(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def run_parts(
    *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "dib-run-parts"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(extra_env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def tree(tmp_path: Path) -> Path:
    out = tmp_path / "out.log"
    d = tmp_path / "hooks" / "install.d"
    write(tmp_path / "hooks" / "environment.d" / "10-env.bash", "export FROM_ENV=yes\n", 0o644)
    write(d / "20-second", HEADER + f'echo "second $FROM_ENV $FROM_CALLER" >> {out}\n')
    write(d / "100-last", HEADER + f'echo "last" >> {out}\n')
    write(d / "3-first", HEADER + f'echo "first" >> {out}\n')
    write(d / "10-foo.sh", HEADER + f'echo "never" >> {out}\n')
    write(d / "ttySx.conf", "resource\n", 0o644)
    return d


def test_list(tmp_path: Path) -> None:
    d = tree(tmp_path)
    r = run_parts("--list", str(d))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(d / "3-first"), str(d / "20-second"), str(d / "100-last")]
    assert not (tmp_path / "out.log").exists()
    # the skipped hook is named in a warning, the resource file is not
    assert "10-foo.sh" in r.stderr and "will not run" in r.stderr
    assert "ttySx" not in r.stderr


def test_run(tmp_path: Path) -> None:
    d = tree(tmp_path)
    r = run_parts(str(d), extra_env={"FROM_CALLER": "inherited"})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.log").read_text().splitlines() == [
        "first",
        "second yes inherited",
        "last",
    ]
    assert "install.d timings:" in r.stderr


def test_failing_hook(tmp_path: Path) -> None:
    d = tmp_path / "root.d"
    write(d / "10-bad", HEADER + "echo about-to-fail\nexit 3\n")
    write(d / "20-after", HEADER + f"touch {tmp_path / 'ran'}\n")
    r = run_parts(str(d))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "dib-run-parts: error: hook root.d/10-bad" in r.stderr
    assert "exit status 3" in r.stderr and "about-to-fail" in r.stderr
    assert not (tmp_path / "ran").exists()


def test_missing_dir(tmp_path: Path) -> None:
    r = run_parts(str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"dib-run-parts: error: {tmp_path / 'nope'} is not a directory")


def test_no_argument(tmp_path: Path) -> None:
    r = run_parts()
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "required" in r.stderr
