"""pip-and-virtualenv without root: the packages of each install type, the environment.d
defaults, fetching a get-pip.py on the host, and the order in which the source install
hook bootstraps pip (run against a fake python3 on PATH)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, write
from tests.unit.test_elements_packages import hook_tree, lists, run_extra_data

ELEMENT = REPO / "elements" / "pip-and-virtualenv"
ENVD = ELEMENT / "environment.d" / "51-pip-and-virtualenv.bash"
GET_PIP_HOOK = ELEMENT / "extra-data.d" / "99-pip-and-virtualenv-get-pip"
SOURCE_HOOK = ELEMENT / "install.d/pip-and-virtualenv-source-install/04-install-pip"


def squashed(tmp_path: Path, **env: str) -> list[str]:
    tree = hook_tree(tmp_path)
    r = run_extra_data(tree, {"pip-and-virtualenv": ELEMENT}, **env)
    assert r.returncode == 0, r.stderr
    return sorted(lists(tree)["install.d.install"])


def test_packages_of_each_install_type(tmp_path: Path) -> None:
    assert squashed(tmp_path / "s") == ["python3-dev", "python3-venv"]
    pkg = squashed(tmp_path / "p", DIB_INSTALLTYPE_pip_and_virtualenv="package")
    assert pkg == ["python3-pip", "python3-venv", "python3-virtualenv"]
    rh = squashed(
        tmp_path / "r", DISTRO_NAME="centos", DIB_RELEASE="9-stream",
        DIB_INSTALLTYPE_pip_and_virtualenv="source",
    )  # fmt: skip
    assert rh == ["python3-devel"]


def env_after(**env: str) -> subprocess.CompletedProcess[str]:
    script = (
        f'set -eu -o pipefail; . "{ENVD}"; '
        'echo "type=${DIB_INSTALLTYPE_pip_and_virtualenv:-unset}'
        ' pip=${DIB_PYTHON_PIP:-unset} break=${PIP_BREAK_SYSTEM_PACKAGES:-unset}"'
    )
    return subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("env", "out"),
    [
        ({"DISTRO_NAME": "debian"}, "type=unset"),
        ({"DISTRO_NAME": "centos"}, "type=package"),
        ({"DISTRO_NAME": "rhel", "DIB_INSTALLTYPE_pip_and_virtualenv": "source"}, "type=source"),
        ({}, "type=unset"),
    ],
)
def test_default_install_type(env: dict[str, str], out: str) -> None:
    r = env_after(**env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == out
    # on the host (no dib-python link) nothing else is exported
    if not Path("/usr/local/bin/dib-python").is_symlink():
        assert r.stdout.split()[1:] == ["pip=unset", "break=unset"]


def run_get_pip(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = tmp_path / "root"
    root.mkdir(parents=True, exist_ok=True)
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TARGET_ROOT": str(root),
        "TMP_HOOKS_PATH": str(REPO / "elements" / "cache-url"),
        "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
        **env,
    }
    r = subprocess.run(["bash", str(GET_PIP_HOOK)], env=full, capture_output=True, text=True)
    return r, root


def test_get_pip_is_fetched_only_when_named_for_source(tmp_path: Path) -> None:
    script = tmp_path / "my-get-pip.py"
    script.write_text("print('mine')\n")
    r, root = run_get_pip(tmp_path / "none")
    assert r.returncode == 0 and not (root / "tmp/get-pip.py").exists()
    r, root = run_get_pip(
        tmp_path / "pkg",
        DIB_REPOLOCATION_pip_and_virtualenv=str(script),
        DIB_INSTALLTYPE_pip_and_virtualenv="package",
    )
    assert r.returncode == 0 and not (root / "tmp/get-pip.py").exists()
    for n, loc in enumerate((str(script), f"file://{script}")):
        r, root = run_get_pip(tmp_path / f"src{n}", DIB_REPOLOCATION_pip_and_virtualenv=loc)
        assert r.returncode == 0, r.stderr
        assert (root / "tmp/get-pip.py").read_text() == "print('mine')\n"
        manifest = (root / "etc/dib-manifests/dib-source-repositories").read_text()
        assert manifest == f"pip-and-virtualenv file /tmp/get-pip.py {loc}\n"
    r, root = run_get_pip(
        tmp_path / "missing", DIB_REPOLOCATION_pip_and_virtualenv=str(tmp_path / "nope.py")
    )
    assert r.returncode != 0


FAKE_PYTHON = """#!/bin/bash
# logs every call; ensurepip and "-m pip --version" answer as FAKE_* say
echo "python3 $*" >> "$LOG"
case "$*" in
    "-m ensurepip"*)
        [ "${FAKE_ENSUREPIP:-0}" = 1 ] || { echo "ensurepip is disabled" >&2; exit 1; } ;;
    "-c "*) echo "$FAKE_STDLIB" ;;
    "-m pip --version")
        [ "${FAKE_PIP:-1}" = 1 ] && echo "pip 99.0 from /usr/local/lib/x (py 3.11)" || exit 1 ;;
    "-m virtualenv --version") echo "virtualenv 20.99 from /x" ;;
esac
exit 0
"""


def run_source_hook(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    bindir = tmp_path / "bin"
    write(bindir / "python3", FAKE_PYTHON, 0o755)
    write(bindir / "install-packages", '#!/bin/bash\necho "install-packages $*" >> "$LOG"\n', 0o755)
    stdlib = tmp_path / "stdlib" / "ensurepip"
    stdlib.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "log"
    full = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "LOG": str(log),
        "FAKE_STDLIB": str(stdlib),
        **env,
    }
    r = subprocess.run(["bash", str(SOURCE_HOOK)], env=full, capture_output=True, text=True)
    return r, log.read_text() if log.exists() else ""


UPGRADES = (
    "python3 -m pip install --upgrade --no-cache-dir pip\n"
    "python3 -m pip install --upgrade --no-cache-dir virtualenv\n"
)


def calls(log: str) -> str:
    """The log without the probes of the bootstrap order and the final report."""
    keep = [
        ln for ln in log.splitlines(keepends=True)
        if not ln.startswith(("python3 -c", "python3 -m pip --version", "python3 -m virtualenv"))
    ]  # fmt: skip
    return "".join(keep)


def test_bootstrap_with_ensurepip(tmp_path: Path) -> None:
    r, log = run_source_hook(tmp_path, FAKE_ENSUREPIP="1")
    assert r.returncode == 0, r.stderr
    assert calls(log) == "python3 -m ensurepip --upgrade --default-pip\n" + UPGRADES
    assert "pip-and-virtualenv: pip 99.0, virtualenv 20.99" in r.stdout


def test_bootstrap_with_the_bundled_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "stdlib/ensurepip/_bundled/pip-23.0.1-py3-none-any.whl"
    write(wheel, "")
    r, log = run_source_hook(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ensurepip refused (ensurepip is disabled)" in r.stdout
    assert calls(log) == (
        "python3 -m ensurepip --upgrade --default-pip\n"
        f"python3 {wheel}/pip install --upgrade --no-cache-dir pip\n" + UPGRADES
    )


def test_bootstrap_with_the_distributions_pip(tmp_path: Path) -> None:
    if list(Path("/usr/share/python-wheels").glob("pip-*.whl")):
        pytest.skip("this host has a pip wheel in /usr/share/python-wheels, which comes first")
    r, log = run_source_hook(tmp_path, FAKE_PIP="0")
    # the fake's pip never appears, so the final report fails; the order is what counts
    assert "install-packages python3-pip\n" + UPGRADES in calls(log)


def test_bootstrap_with_get_pip(tmp_path: Path) -> None:
    getpip = Path("/tmp/get-pip.py")
    if getpip.exists():
        pytest.skip("/tmp/get-pip.py exists on this host")
    getpip.write_text("")
    try:
        r, log = run_source_hook(tmp_path)
    finally:
        existed = getpip.exists()
        getpip.unlink(missing_ok=True)
    assert r.returncode == 0, r.stderr
    assert not existed  # the hook removes it once used
    assert calls(log) == "python3 /tmp/get-pip.py --upgrade --no-cache-dir\n" + UPGRADES
