"""zypper's install-packages: the zypper command lines it makes for each option.

zypper and rpm are replaced by scripts on PATH that log their arguments (``rpm -q``
answers "installed" for the names in $INSTALLED), so the script's own logic is what is
checked: one install run without recommends, erase limited to installed packages,
update, and the usage error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "elements/zypper/bin/install-packages"

FAKE_ZYPPER = '#!/bin/bash\necho "zypper $*" >>"$LOG"\n'
FAKE_RPM = """#!/bin/bash
# rpm -q --quiet NAME: installed when NAME is in $INSTALLED
name=${!#}
case " $INSTALLED " in *" $name "*) exit 0 ;; esac
exit 1
"""


def run(tmp_path: Path, *args: str, installed: str = "") -> tuple[int, list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("zypper", FAKE_ZYPPER), ("rpm", FAKE_RPM)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LOG": str(log),
        "INSTALLED": installed,
    }
    r = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True)
    return r.returncode, log.read_text().splitlines(), r.stderr


Z = "zypper --non-interactive --gpg-auto-import-keys"


@pytest.mark.parametrize(
    ("args", "installed", "want"),
    [
        (["vim", "tar"], "", [f"{Z} install --no-recommends vim tar"]),
        ([], "", []),
        (["-u"], "", [f"{Z} update"]),
        (["-e", "vim", "absent", "tar"], "vim tar", [f"{Z} remove --clean-deps vim tar"]),
        (["-e", "absent"], "", []),
    ],
)
def test_install_packages_command_lines(
    tmp_path: Path, args: list[str], installed: str, want: list[str]
) -> None:
    rc, calls, err = run(tmp_path, *args, installed=installed)
    assert rc == 0, err
    assert calls == want


def test_install_packages_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    rc, calls, err = run(tmp_path, "-x", "vim")
    assert rc == 2
    assert calls == []
    assert "install-packages [-u] [-e] [-m ELEMENT]" in err
