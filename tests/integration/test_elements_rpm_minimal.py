"""yum-minimal / centos-minimal / openeuler-minimal (host dnf) and zypper-minimal /
opensuse-minimal (host zypper): the root.d bootstrap hooks against a local rpm-md
repository served on 127.0.0.1.

No distribution mirror is reachable here, so the module builds two tiny noarch rpms with
rpmbuild (``fake-filesystem``: the /bin and /sbin links and the usual directories;
``fake-sh``: the host's busybox as /usr/bin/sh, requiring ``fake-filesystem``;
``fake-repos``: a distribution's repo file, as its release package ships it), indexes
them with createrepo_c and lays the repository out under each distribution's mirror
paths (symlinks).  Each test runs the elements' environment.d files and root.d hooks as
the pipeline does, then checks the tree: the packages' files, the rpm database
(``rpm --root TREE -qa``, dependencies resolved) and the image's repository files,
also after yum-minimal's cleanup.d hook for the bootstrap mirror's files.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, serve_directory, url_of

ELEMENTS = REPO / "elements"
TOOLS = ("dnf", "rpm", "rpmbuild", "createrepo_c", "zypper", "busybox")

FILESYSTEM_SPEC = """\
Name: fake-filesystem
Version: 1.0
Release: 1
Summary: directories of a test root
License: MIT
BuildArch: noarch
%description
test fixture
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/sbin %{buildroot}/etc %{buildroot}/var/tmp
ln -s usr/bin %{buildroot}/bin
ln -s usr/sbin %{buildroot}/sbin
echo fixture > %{buildroot}/etc/fake-release
%files
/bin
/sbin
%dir /usr/bin
%dir /usr/sbin
%dir /var/tmp
/etc/fake-release
"""

SH_SPEC = """\
%define _binaries_in_noarch_packages_terminate_build 0
Name: fake-sh
Version: 1.0
Release: 1
Summary: busybox as /bin/sh
License: GPL-2.0-only
BuildArch: noarch
Requires: fake-filesystem
Provides: /bin/sh
%description
test fixture
%install
mkdir -p %{buildroot}/usr/bin
cp BUSYBOX %{buildroot}/usr/bin/busybox
ln -s busybox %{buildroot}/usr/bin/sh
%files
/usr/bin/busybox
/usr/bin/sh
"""

# a distribution's release package: the repo file it installs is the image's own
REPOS_SPEC = """\
Name: fake-repos
Version: 1.0
Release: 1
Summary: the distribution's repo file
License: MIT
BuildArch: noarch
Requires: fake-filesystem
%description
test fixture
%install
mkdir -p %{buildroot}/etc/yum.repos.d
printf '[fake-distro]\\nbaseurl=http://distribution.invalid/os/\\ngpgcheck=1\\n' \\
    > %{buildroot}/etc/yum.repos.d/fake-distro.repo
%files
%config(noreplace) /etc/yum.repos.d/fake-distro.repo
"""
DISTRO_REPO = "[fake-distro]\nbaseurl=http://distribution.invalid/os/\ngpgcheck=1\n"

# the repository directories of each distribution's mirror layout
MIRROR_PATHS = [
    "9-stream/BaseOS/x86_64/os",
    "9-stream/AppStream/x86_64/os",
    "openEuler-22.03-LTS/OS/x86_64",
    "openEuler-22.03-LTS/everything/x86_64",
    "openEuler-22.03-LTS/EPOL/main/x86_64",
    "openEuler-22.03-LTS/update/x86_64",
    "distribution/leap/15.5/repo/oss",
    "update/leap/15.5/oss",
]


def _missing_tool() -> str | None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    return f"host tools missing: {', '.join(missing)} (./dev installs them)" if missing else None


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = _missing_tool()
    if reason:
        pytest.skip(reason)
    top = tmp_path_factory.mktemp("rpmbuild")
    busybox = shutil.which("busybox")
    assert busybox
    rpms = []
    specs = (("fake-filesystem", FILESYSTEM_SPEC), ("fake-sh", SH_SPEC), ("fake-repos", REPOS_SPEC))
    for name, spec in specs:
        f = top / f"{name}.spec"
        f.write_text(spec.replace("BUSYBOX", busybox))
        r = subprocess.run(
            ["rpmbuild", "-bb", "--define", f"_topdir {top}",
             "--define", "__os_install_post %{nil}", "--define", "debug_package %{nil}", str(f)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        rpms.append(top / f"RPMS/noarch/{name}-1.0-1.noarch.rpm")
    pool = top / "pool"
    pool.mkdir()
    for p in rpms:
        shutil.copy2(p, pool)
    r = subprocess.run(["createrepo_c", "-q", str(pool)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    root = top / "mirror"
    for rel in MIRROR_PATHS:
        d = root / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        d.symlink_to(pool)
    with serve_directory(root) as server:
        yield url_of(server)


def run_hooks(
    tmp_path: Path, elements: list[str], hooks: list[str], **env: str
) -> subprocess.CompletedProcess[str]:
    """Source the elements' environment.d files, then run the hooks in order, with a
    hooks tree holding the elements' merged yum.repos.d (as merge_hooks makes it)."""
    tree = tmp_path / "hooks"
    (tree / "yum.repos.d").mkdir(parents=True, exist_ok=True)
    sources = []
    for el in elements:
        repos = ELEMENTS / el / "yum.repos.d"
        if repos.is_dir():
            shutil.copytree(repos, tree / "yum.repos.d", dirs_exist_ok=True)
        sources += sorted(str(p) for p in (ELEMENTS / el / "environment.d").glob("*"))
    script = "set -eu\n" + "".join(f"source {s}\n" for s in sources)
    script += "".join(f"{ELEMENTS / h}\n" for h in hooks)
    full = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "TARGET_ROOT": str(tmp_path / "root"),
        "TMP_HOOKS_PATH": str(tree),
        "ARCH": "amd64",
        **env,
    }
    return subprocess.run(
        ["bash", "-c", script], env=full, capture_output=True, text=True, timeout=300
    )


def installed(root: Path) -> set[str]:
    r = subprocess.run(
        ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-qa", "--qf", "%{NAME}\\n"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def check_tree(root: Path) -> None:
    assert installed(root) == {"fake-filesystem", "fake-sh"}
    assert (root / "bin").readlink() == Path("usr/bin")
    assert (root / "usr/bin/sh").readlink() == Path("busybox")
    assert (root / "usr/bin/busybox").stat().st_size > 100_000
    assert (root / "etc/fake-release").read_text() == "fixture\n"
    # nothing of the host's bootstrap run is left in the tree
    assert not (root / "root/.rpmdb").exists()
    assert not [p for p in (root / "var/cache").rglob("*") if not p.is_dir()]
    assert not list(root.glob("tmp/*"))
    assert not list(root.glob("run/*"))
    r = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "echo ok"], capture_output=True)
    assert r.stdout == b"ok\n", r.stderr


YUM = "yum-minimal/root.d/08-yum-minimal"
ZYPPER = "zypper-minimal/root.d/08-zypper-minimal"


def test_centos_minimal_bootstraps_with_the_hosts_dnf(mirror: str, tmp_path: Path) -> None:
    r = run_hooks(tmp_path, ["centos-minimal"], [YUM], DIB_DISTRIBUTION_MIRROR=mirror + "/",
                  DIB_YUM_MINIMAL_BOOTSTRAP_PACKAGES="fake-sh")  # fmt: skip
    assert r.returncode == 0, r.stderr
    root = tmp_path / "root"
    check_tree(root)
    base = (root / "etc/yum.repos.d/base.repo").read_text()
    assert f"baseurl={mirror}/9-stream/BaseOS/$basearch/os/\n" in base
    assert "gpgcheck=1" in base
    assert sorted(p.name for p in (root / "etc/yum.repos.d").iterdir()) == [
        "appstream.repo",
        "base.repo",
    ]
    # the metadata cache was a temporary directory, gone with the hook
    assert not list(tmp_path.glob("yum-minimal.*"))


def test_openeuler_minimal_writes_its_repo_file_and_bootstraps(mirror: str, tmp_path: Path) -> None:
    r = run_hooks(tmp_path, ["openeuler-minimal"],
                  ["openeuler-minimal/root.d/07-openeuler-repos", YUM],
                  DIB_DISTRIBUTION_MIRROR=mirror,
                  DIB_YUM_MINIMAL_BOOTSTRAP_PACKAGES="fake-sh")  # fmt: skip
    assert r.returncode == 0, r.stderr
    root = tmp_path / "root"
    check_tree(root)
    repo = (root / "etc/yum.repos.d/openEuler.repo").read_text()
    assert repo.count("baseurl=") == 4
    assert f"baseurl={mirror}/openEuler-22.03-LTS/EPOL/main/$basearch/" in repo


def test_opensuse_minimal_bootstraps_with_the_hosts_zypper(mirror: str, tmp_path: Path) -> None:
    r = run_hooks(tmp_path, ["opensuse-minimal"], [ZYPPER], DIB_DISTRIBUTION_MIRROR=mirror,
                  DIB_ZYPPER_MINIMAL_NO_GPG="1",
                  DIB_ZYPPER_MINIMAL_BOOTSTRAP_PACKAGES="fake-sh")  # fmt: skip
    assert r.returncode == 0, r.stderr
    root = tmp_path / "root"
    check_tree(root)
    repos = sorted(p.name for p in (root / "etc/zypp/repos.d").iterdir())
    assert repos == ["oss.repo", "update.repo"]
    oss = (root / "etc/zypp/repos.d/oss.repo").read_text()
    assert f"baseurl={mirror}/distribution/leap/15.5/repo/oss" in oss
    assert "solver.onlyRequires = true" in (root / "etc/zypp/zypp.conf").read_text()


@pytest.mark.parametrize(
    ("elements", "hook", "env", "words"),
    [
        (["centos-minimal"], YUM, {}, "set DIB_DISTRIBUTION_MIRROR"),
        (["centos-minimal"], YUM, {"DIB_RELEASE": "7-stream"},
         "no repo files for release '7-stream'"),
        (["opensuse-minimal"], ZYPPER, {}, "set DIB_DISTRIBUTION_MIRROR"),
        (["opensuse-minimal"], ZYPPER, {"ZYPPER_REPOS": "just-a-url"},
         "ZYPPER_REPOS entry 'just-a-url' is not name=URL"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(
    tmp_path: Path, elements: list[str], hook: str, env: dict[str, str], words: str
) -> None:
    reason = _missing_tool()
    if reason:
        pytest.skip(reason)
    r = run_hooks(tmp_path, elements, [hook], **env)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].endswith(words) or words in lines[0], lines[0]
    assert "ERROR" in lines[0]


def test_a_mirror_without_the_packages_fails_naming_the_mirror(mirror: str, tmp_path: Path) -> None:
    r = run_hooks(tmp_path, ["centos-minimal"], [YUM], DIB_DISTRIBUTION_MIRROR=mirror,
                  DIB_YUM_MINIMAL_BOOTSTRAP_PACKAGES="no-such-package")  # fmt: skip
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "dnf could not bootstrap 'no-such-package'" in last
    assert mirror in last


REMOVE_MIRROR = "yum-minimal/cleanup.d/95-remove-yum-mirror"


def repo_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "etc/yum.repos.d").iterdir())


def test_bootstrap_repos_are_used_for_the_build_and_removed_at_cleanup(
    mirror: str, tmp_path: Path
) -> None:
    # a gate's mirror files (named dib-mirror-*) and one extra repository of one's own
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "dib-mirror-base.repo").write_text(
        f"[dib-mirror-base]\nbaseurl={mirror}/9-stream/BaseOS/x86_64/os/\ngpgcheck=0\n"
    )
    extra = tmp_path / "extra.repo"
    extra.write_text(f"[extra]\nbaseurl={mirror}/9-stream/AppStream/x86_64/os/\ngpgcheck=0\n")
    env = {"DIB_YUM_MINIMAL_BOOTSTRAP_REPOS": str(gate), "DIB_YUM_MINIMAL_EXTRA_REPOS": str(extra)}
    r = run_hooks(tmp_path, ["centos-minimal"], [YUM],
                  DIB_YUM_MINIMAL_BOOTSTRAP_PACKAGES="fake-sh fake-repos", **env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    root = tmp_path / "root"
    assert installed(root) == {"fake-filesystem", "fake-sh", "fake-repos"}
    # during the build only the given repositories are enabled: the distribution's own
    # file, from its release package, is set aside
    assert repo_files(root) == [
        "dib-mirror-base.repo",
        "extra.repo",
        "fake-distro.repo.USING_MIRROR",
    ]
    assert "fake-distro.repo is set aside" in r.stdout

    r = run_hooks(tmp_path, ["centos-minimal"], [REMOVE_MIRROR], **env)
    assert r.returncode == 0, r.stderr
    assert repo_files(root) == ["extra.repo", "fake-distro.repo"]
    assert (root / "etc/yum.repos.d/fake-distro.repo").read_text() == DISTRO_REPO
    assert (root / "etc/yum.repos.d/extra.repo").read_text() == extra.read_text()


def test_without_bootstrap_repos_cleanup_keeps_every_repo_file(tmp_path: Path) -> None:
    repos = tmp_path / "root/etc/yum.repos.d"
    repos.mkdir(parents=True)
    for name in ("dib-mirror-mine.repo", "base.repo", "old.repo.USING_MIRROR"):
        (repos / name).write_text(f"# {name}\n")
    r = run_hooks(tmp_path, ["centos-minimal"], [REMOVE_MIRROR])
    assert r.returncode == 0, r.stderr
    assert repo_files(tmp_path / "root") == [
        "base.repo",
        "dib-mirror-mine.repo",
        "old.repo.USING_MIRROR",
    ]
