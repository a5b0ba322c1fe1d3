"""A third-party style element on the tiny OS: install-types directories chosen with
DIB_INSTALLTYPE_<prefix>, and a source-repository redirected to a local git repository
with DIB_REPOLOCATION_<name> / DIB_REPOREF_<name>, as TripleO/Ironic element packages do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works, git, write

DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]
FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def third_party_element(els: Path) -> None:
    el = els / "agent"
    write(el / "README.rst", "An agent installed from source or from packages.\n")
    write(el / "element-deps", "install-types\nsource-repositories\n")
    # the upstream location is unreachable on purpose: the build must use the override
    write(el / "source-repository-agent", "agent git /opt/agent https://git.invalid/agent.git\n")
    write(
        el / "install.d/agent-source-install/60-agent-source",
        "#!/bin/bash\nset -eu -o pipefail\n"
        'echo "source: $(cat /opt/agent/VERSION)" > /root/agent-install\n',
        0o755,
    )
    write(
        el / "install.d/agent-package-install/60-agent-package",
        '#!/bin/bash\nset -eu -o pipefail\necho "package" > /root/agent-install\n',
        0o755,
    )


def build(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    els = tmp_path / "els"
    third_party_element(els)
    write(
        els / "snap/cleanup.d/99-snap",
        '#!/bin/bash\nset -eu -o pipefail\ncp -a "$TARGET_ROOT" "$SNAP_OUT"\n',
        0o755,
    )
    write(els / "snap/README.rst", "snapshot\n")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    full.update(
        ELEMENTS_PATH=f"{els}:{FIXTURES}",
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        SNAP_OUT=str(tmp_path / "snap"),
        **env,
    )
    r = subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "out/img"), "tiny-os", "agent", "no-final-image", "snap"],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r, tmp_path / "snap"


@pytest.fixture
def local_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "agent-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "VERSION").write_text("1.0\n")
    git(repo, "add", "VERSION")
    git(repo, "commit", "-q", "-m", "1.0")
    git(repo, "checkout", "-q", "-b", "stable/2")
    (repo / "VERSION").write_text("2.0\n")
    git(repo, "commit", "-q", "-am", "2.0")
    git(repo, "checkout", "-q", "main")
    return repo


def test_source_install_from_a_redirected_local_git_repo(tmp_path: Path, local_repo: Path) -> None:
    r, snap = build(tmp_path, DIB_REPOLOCATION_agent=str(local_repo), DIB_REPOREF_agent="stable/2")
    assert r.returncode == 0, r.stderr[-4000:]
    assert (snap / "root/agent-install").read_text() == "source: 2.0\n"
    assert (snap / "opt/agent/VERSION").read_text() == "2.0\n"
    manifest = (snap / "etc/dib-manifests/dib-source-repositories").read_text()
    assert f"agent git /opt/agent {local_repo} " in manifest


def test_package_install_type_per_prefix(tmp_path: Path, local_repo: Path) -> None:
    r, snap = build(
        tmp_path, DIB_REPOLOCATION_agent=str(local_repo), DIB_INSTALLTYPE_agent="package"
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert (snap / "root/agent-install").read_text() == "package\n"


def test_default_install_type_from_the_command_line(tmp_path: Path, local_repo: Path) -> None:
    r, snap = build(
        tmp_path, DIB_REPOLOCATION_agent=str(local_repo), DIB_DEFAULT_INSTALLTYPE="package"
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert (snap / "root/agent-install").read_text() == "package\n"


def test_default_ref_is_master_and_git_is_installed(tmp_path: Path, local_repo: Path) -> None:
    # as in diskimage-builder: no ref means master (here not the repository's HEAD)
    git(local_repo, "branch", "master", "stable/2")
    r, snap = build(tmp_path, DIB_REPOLOCATION_agent=str(local_repo))
    assert r.returncode == 0, r.stderr[-4000:]
    assert (snap / "opt/agent/VERSION").read_text() == "2.0\n"
    # pip installing a git checkout runs pbr, which needs git in the image
    assert "git" in (snap / "var/log/installed-packages").read_text().split()


def test_without_master_the_default_branch_is_used(tmp_path: Path, local_repo: Path) -> None:
    r, snap = build(tmp_path, DIB_REPOLOCATION_agent=str(local_repo))
    assert r.returncode == 0, r.stderr[-4000:]
    assert (snap / "opt/agent/VERSION").read_text() == "1.0\n"
    assert "has no master branch; using its HEAD" in r.stdout + r.stderr
