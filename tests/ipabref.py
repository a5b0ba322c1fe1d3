"""ironic-python-agent-builder, a client of diskimage-builder, as a test fixture.

Installed from the package index in its own venv in the test cache (it pulls in
diskimage-builder there, whose ``disk-image-create`` must not be the one that runs: the
tests put dibpy's first on PATH).  Its elements fetch ironic-python-agent and OpenStack's
requirements with source-repositories from servers we cannot reach; the tests point
them (``DIB_REPOLOCATION_*``) at local git repositories made here: the agent's from its
sdist on the package index, tagged with its version as upstream's tree is (pbr takes
the version from the tag), and a requirements repository whose upper-constraints.txt
pins one of the agent's dependencies, so that a test can see the constraints were used.

The cache is :func:`tests.dibref.cache_dir`.  When the index cannot be reached, the
fixtures skip with pip's own reason.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.dibref import cache_dir

IPA_BUILDER_VERSION = "7.4.0"
IPA_VERSION = "13.0.0"
#: pinned in the local upper-constraints.txt (the newest release is what pip takes without it)
PINNED = ("tenacity", "9.0.0")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "dibpy tests",
    "GIT_AUTHOR_EMAIL": "tests@dibpy.invalid",
    "GIT_COMMITTER_NAME": "dibpy tests",
    "GIT_COMMITTER_EMAIL": "tests@dibpy.invalid",
}


def _pip(*args: str, python: str = sys.executable) -> tuple[bool, str]:
    r = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True, check=False)
    tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
    return r.returncode == 0, tail


@functools.cache
def _builder() -> tuple[Path | None, str]:
    venv = cache_dir() / f"ironic-python-agent-builder-{IPA_BUILDER_VERSION}"
    exe = venv / "bin" / "ironic-python-agent-builder"
    if (venv / ".installed").exists():
        return exe, ""
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    # the host's python, not ours: the client's venv is its own
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    ok, tail = _pip(
        "install", "-q", f"ironic-python-agent-builder=={IPA_BUILDER_VERSION}",
        python=str(venv / "bin" / "python"),
    )  # fmt: skip
    if not ok or not exe.exists():
        return None, f"cannot install ironic-python-agent-builder: {tail}"
    (venv / ".installed").touch()
    return exe, ""


def ipa_builder() -> Path:
    """The client's own command, in its own venv; skips with pip's reason."""
    exe, why = _builder()
    if exe is None:
        pytest.skip(why)
    return exe


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
    )


def _sdist() -> Path:
    sdists = cache_dir() / "sdists"
    sdists.mkdir(exist_ok=True)
    name = f"ironic_python_agent-{IPA_VERSION}.tar.gz"
    if not (sdists / name).exists():
        ok, tail = _pip(
            "download", "-q", "--no-deps", "--no-binary", ":all:",
            f"ironic-python-agent=={IPA_VERSION}", "-d", str(sdists),
        )  # fmt: skip
        if not ok or not (sdists / name).exists():
            pytest.skip(f"cannot download the ironic-python-agent sdist: {tail}")
    return sdists / name


def source_repos(where: Path) -> dict[str, str]:
    """Local git repositories for the agent and requirements; the variables naming them."""
    agent = where / "ironic-python-agent"
    with tarfile.open(_sdist()) as tar:
        tar.extractall(where, filter="data")
    (where / f"ironic_python_agent-{IPA_VERSION}").rename(agent)
    requirements = where / "requirements"
    requirements.mkdir()
    (requirements / "upper-constraints.txt").write_text(f"{PINNED[0]}==={PINNED[1]}\n")
    for repo, message in ((agent, f"ironic-python-agent {IPA_VERSION}"), (requirements, "uc")):
        _git(repo, "init", "-q", "-b", "master")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", message)
    _git(agent, "tag", IPA_VERSION)
    return {
        "DIB_REPOLOCATION_ironic_python_agent": str(agent),
        "DIB_REPOLOCATION_requirements": str(requirements),
    }
