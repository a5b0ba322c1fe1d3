"""Host-side hooks and helper commands of the built-in elements, run for real (no root).

External programs the hooks need from the network (debootstrap) are replaced by fake
binaries on PATH; everything else (tar, zstd, sha256sum, curl with file:// URLs) is real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

ELEMENTS = REPO / "elements"
BASE_ENV = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "LC_ALL": "C"}


def bash(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args], env={**BASE_ENV, **env}, capture_output=True, text=True
    )


# --- debootstrap: mirror detection --------------------------------------------------

HOST_SOURCES = ELEMENTS / "debootstrap" / "debootstrap-tools" / "host_apt_sources.py"


def fake_host(root: Path, os_id: str = "debian", lists: dict[str, str] | None = None) -> Path:
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/os-release").write_text(f'ID={os_id}\nVERSION_CODENAME="bookworm"\n')
    for name, text in (lists or {}).items():
        (root / "etc/apt" / name).write_text(text)
    return root


def host_sources(root: Path) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, str(HOST_SOURCES), str(root)], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_mirror_from_deb822_skips_security_third_party_and_disabled(tmp_path: Path) -> None:
    root = fake_host(
        tmp_path,
        lists={
            "sources.list.d/aaa-vendor.sources": (
                "Types: deb\nURIs: http://vendor.example/apt\nSuites: nodistro\nComponents: main\n"
            ),
            "sources.list.d/debian.sources": (
                "# comment\n"
                "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
                "Enabled: no\n\n"
                "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb\nURIs: http://security.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n"
            ),
        },
    )
    assert host_sources(root) == {
        "mirror": "http://mirror.example/debian",
        "security": "http://security.example/debian-security",
    }


def test_mirror_from_one_line_sources_with_options(tmp_path: Path) -> None:
    root = fake_host(
        tmp_path,
        lists={
            "sources.list": (
                "deb cdrom:[Debian 12]/ bookworm main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://sec.example/ds"
                " bookworm-security main\n"
                "# deb http://commented.example/debian bookworm main\n"
                "deb-src http://src.example/debian bookworm main\n"
                "deb [trusted=yes] https://mirror.example/debian stable main\n"
            ),
            "sources.list.d/other.list": "deb http://other.example/x cloud-sdk-bookworm main\n",
        },
    )
    assert host_sources(root) == {
        "mirror": "https://mirror.example/debian",
        "security": "http://sec.example/ds",
    }


def test_no_mirror_from_a_non_debian_host(tmp_path: Path) -> None:
    root = fake_host(
        tmp_path,
        os_id="ubuntu",
        lists={"sources.list": "deb http://u.example/ubuntu bookworm main\n"},
    )
    assert host_sources(root) == {}


# --- debootstrap: the bootstrap cache -------------------------------------------------

FAKE_DEBOOTSTRAP = """#!/bin/bash
# fake debootstrap: records its arguments, makes a tiny root like debootstrap's
echo "$@" >> "$FAKE_LOG"
args=("$@")
n=${#args[@]}
if [ -n "${FAKE_MIRROR_GIVEN:-}" ]; then root=${args[n-2]}; else root=${args[n-1]}; fi
mkdir -p "$root/etc/apt" "$root/usr/bin"
echo "deb http://default.example/debian bookworm main" > "$root/etc/apt/sources.list"
echo host-name > "$root/etc/hostname"
echo "nameserver 10.9.9.9" > "$root/etc/resolv.conf"
chmod 0755 "$root/etc/hostname"
echo bootstrapped > "$root/usr/bin/marker"
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    d = tmp_path / "fakebin"
    d.mkdir()
    (d / "debootstrap").write_text(FAKE_DEBOOTSTRAP)
    (d / "debootstrap").chmod(0o755)
    return d


def run_debootstrap_hook(
    tmp_path: Path, fake_bin: Path, target: str, **env: str
) -> subprocess.CompletedProcess[str]:
    root = tmp_path / target
    root.mkdir()
    full = {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "TARGET_ROOT": str(root),
        "DIB_RELEASE": "bookworm",
        "ARCH": "amd64",
        "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
        "DIB_PYTHON_EXEC": sys.executable,
        "FAKE_LOG": str(tmp_path / "debootstrap.log"),
        "DIB_DISTRIBUTION_MIRROR": "http://mirror.example/debian",
        "DIB_DEBIAN_SECURITY_MIRROR": "http://security.example/debian-security",
        "FAKE_MIRROR_GIVEN": "1",
        **env,
    }
    return bash(ELEMENTS / "debootstrap" / "root.d" / "08-debootstrap", full)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "debootstrap.log"
    return log.read_text().splitlines() if log.exists() else []


def settled(cache: Path) -> None:
    """Wait for the hook's background job to put its tarball in place (up to 30 s)."""
    deadline = time.monotonic() + 30
    while list(cache.glob("*.tmp")) + list(cache.glob(".*.spool")):
        assert time.monotonic() < deadline, "the bootstrap tarball was never written"
        time.sleep(0.05)


def test_bootstrap_is_cached_and_reused(tmp_path: Path, fake_bin: Path) -> None:
    r = run_debootstrap_hook(tmp_path, fake_bin, "root1")
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path) == [
        "--variant=minbase --arch=amd64 --components=main bookworm "
        f"{tmp_path}/root1 http://mirror.example/debian"
    ]
    cache = tmp_path / "cache" / "debootstrap"
    assert "caching the bootstrap" in r.stdout and "in the background" in r.stdout
    settled(cache)
    tarballs = [p for p in cache.glob("bookworm-amd64-*.tar.*") if not p.name.endswith(".info")]
    assert len(tarballs) == 1, tarballs
    root = tmp_path / "root1"
    assert (root / "usr/bin/marker").read_text() == "bootstrapped\n"
    # the build host's identity never stays in the image
    assert (root / "etc/hostname").read_text() == "localhost\n"
    assert oct((root / "etc/hostname").stat().st_mode & 0o777) == "0o644"
    assert (root / "etc/resolv.conf").read_text() == ""
    assert (root / "etc/apt/sources.list").read_text().splitlines() == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://security.example/debian-security bookworm-security main",
    ]

    r = run_debootstrap_hook(tmp_path, fake_bin, "root2")
    assert r.returncode == 0, r.stderr
    assert len(calls(tmp_path)) == 1, "a rebuild must not run debootstrap again"
    key = tarballs[0].name.split("-")[2].split(".")[0]
    assert f"reusing cached bootstrap {key} from 20" in r.stdout
    assert (tmp_path / "root2/usr/bin/marker").read_text() == "bootstrapped\n"
    assert (tmp_path / "root2/etc/hostname").read_text() == "localhost\n"

    # offline with the cache: fine; a different setting is a different key
    r = run_debootstrap_hook(tmp_path, fake_bin, "root3", DIB_OFFLINE="1")
    assert r.returncode == 0 and "reusing cached bootstrap" in r.stdout
    r = run_debootstrap_hook(tmp_path, fake_bin, "root4", DIB_DEBOOTSTRAP_INCLUDE="less")
    assert r.returncode == 0, r.stderr
    assert len(calls(tmp_path)) == 2 and "--include=less" in calls(tmp_path)[1]
    settled(cache)
    assert len([p for p in cache.glob("*.tar.*") if not p.name.endswith(".info")]) == 2


def test_offline_without_cache_fails_clearly(tmp_path: Path, fake_bin: Path) -> None:
    r = run_debootstrap_hook(tmp_path, fake_bin, "root", DIB_OFFLINE="1")
    assert r.returncode == 1
    assert "DIB_OFFLINE=1 but there is no cached bootstrap of bookworm/amd64" in r.stderr
    assert calls(tmp_path) == []


def test_cache_can_be_turned_off(tmp_path: Path, fake_bin: Path) -> None:
    for n in (1, 2):
        r = run_debootstrap_hook(tmp_path, fake_bin, f"root{n}", DIB_DEBOOTSTRAP_CACHE="0")
        assert r.returncode == 0, r.stderr
    assert len(calls(tmp_path)) == 2
    assert not list((tmp_path / "cache").rglob("*.tar*"))


def test_default_mirror_when_none_known(tmp_path: Path, fake_bin: Path) -> None:
    r = run_debootstrap_hook(
        tmp_path,
        fake_bin,
        "root",
        DIB_DISTRIBUTION_MIRROR="http://mirror.example/debian",
        DIB_RELEASE="sid",
        DIB_DEBIAN_COMPONENTS="main,contrib",
    )
    assert r.returncode == 0, r.stderr
    # sid has neither -updates nor -security
    assert (tmp_path / "root/etc/apt/sources.list").read_text() == (
        "deb http://mirror.example/debian sid main contrib\n"
    )


# --- cache-url -----------------------------------------------------------------------

CACHE_URL = ELEMENTS / "cache-url" / "bin" / "cache-url"


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_cache_url_downloads_and_checks_the_checksum(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "cache" / "dl" / "file.bin"
    r = bash(CACHE_URL, {}, "-s", sha256(b"payload"), f"file://{src}", str(dest))
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == b"payload"

    src.write_bytes(b"tampered")
    r = bash(CACHE_URL, {}, "-f", "-s", sha256(b"payload"), f"file://{src}", str(dest))
    assert r.returncode == 1
    assert "checksum mismatch" in r.stderr and sha256(b"tampered") in r.stderr
    assert dest.read_bytes() == b"payload", "a bad download must not replace the cached file"
    assert list(dest.parent.iterdir()) == [dest], "no partial files left behind"


def test_cache_url_offline(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "f"
    r = bash(CACHE_URL, {"DIB_OFFLINE": "1"}, "file:///nonexistent", str(dest))
    assert r.returncode == 1 and "DIB_OFFLINE=1" in r.stderr and "not in the cache" in r.stderr
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    r = bash(CACHE_URL, {"DIB_OFFLINE": "1"}, "file:///nonexistent", str(dest))
    assert r.returncode == 0 and dest.read_bytes() == b"old"
    r = bash(CACHE_URL, {"DIB_OFFLINE": "1"}, "-s", sha256(b"new"), "file:///x", str(dest))
    assert r.returncode == 1 and "damaged" in r.stderr


def test_cache_url_bad_url_fails(tmp_path: Path) -> None:
    r = bash(CACHE_URL, {}, f"file://{tmp_path}/missing", str(tmp_path / "d"))
    assert r.returncode == 1 and "downloading" in r.stderr
    assert not (tmp_path / "d").exists()


# --- install-types -------------------------------------------------------------------


def test_install_types_links_the_chosen_type(tmp_path: Path) -> None:
    inst = tmp_path / "hooks" / "install.d"
    for d, hook in [
        ("nova-source-install", "20-nova-src"),
        ("nova-package-install", "20-nova-pkg"),
        ("my-app-package-install", "30-app-pkg"),
        ("my-app-source-install", "30-app-src"),
    ]:
        (inst / d).mkdir(parents=True)
        (inst / d / hook).write_text("#!/bin/sh\n")
    hook = ELEMENTS / "install-types" / "extra-data.d" / "99-enable-install-types"
    env = {"TMP_HOOKS_PATH": str(tmp_path / "hooks"), "DIB_INSTALLTYPE_my_app": "package"}
    r = bash(hook, env)
    assert r.returncode == 0, r.stderr
    links = {p.name: os.readlink(p) for p in inst.iterdir() if p.is_symlink()}
    assert links == {
        "20-nova-src": "nova-source-install/20-nova-src",
        "30-app-pkg": "my-app-package-install/30-app-pkg",
    }
    # a clash with an existing hook is an error naming it
    (inst / "20-nova-src").unlink()
    (inst / "20-nova-src").write_text("#!/bin/sh\n")
    r = bash(hook, env)
    assert r.returncode == 1 and "clashes with install.d/20-nova-src" in r.stderr


# --- dib-run-parts (the in-chroot script) ---------------------------------------------

RUN_PARTS = ELEMENTS / "dib-run-parts" / "bin" / "dib-run-parts"


def test_dib_run_parts_order_environment_and_failure(tmp_path: Path) -> None:
    d = tmp_path / "t" / "install.d"
    d.mkdir(parents=True)
    (tmp_path / "t/environment.d").mkdir()
    (tmp_path / "t/environment.d/10-a.bash").write_text("export FROM_ENV=yes\n")
    out = tmp_path / "out"
    for name in ("100-last", "20-second", "9-first", "50-skip.sh", "60-not-exec"):
        (d / name).write_text(f'#!/bin/bash\necho "{name} $FROM_ENV" >> {out}\n')
        if name != "60-not-exec":
            (d / name).chmod(0o755)
    r = bash(RUN_PARTS, {}, "--list", str(d))
    assert r.stdout.split() == ["9-first", "20-second", "100-last"]
    assert "50-skip.sh will not run" in r.stderr and "60-not-exec will not run" in r.stderr
    r = bash(RUN_PARTS, {}, str(d))
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines() == ["9-first yes", "20-second yes", "100-last yes"]
    (d / "30-fails").write_text("#!/bin/bash\nexit 7\n")
    (d / "30-fails").chmod(0o755)
    out.unlink()
    r = bash(RUN_PARTS, {}, str(d))
    assert r.returncode == 7 and "30-fails failed with exit status 7" in r.stderr
    assert out.read_text().splitlines() == ["9-first yes", "20-second yes"]


# --- manifests -----------------------------------------------------------------------


def test_manifests_redact_secrets(tmp_path: Path) -> None:
    env = {
        "TARGET_ROOT": str(tmp_path),
        "DIB_ARGS": "-o img debian vm",
        "DIB_ENV": "declare -x DIB_RELEASE=bookworm\ndeclare -x DIB_DEV_USER_PASSWORD=hunter2\n"
        "declare -x DIB_API_TOKEN='abc'",
        "IMAGE_ELEMENT_YAML": "vm: /x/vm",
    }
    r = bash(ELEMENTS / "manifests" / "extra-data.d" / "20-manifest-dir", env)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "etc/dib-manifests"
    text = (d / "dib_environment").read_text()
    assert "DIB_RELEASE=bookworm" in text
    assert "hunter2" not in text and "abc" not in text
    assert "declare -x DIB_DEV_USER_PASSWORD=<redacted>" in text
    assert (d / "dib_arguments").read_text() == "-o img debian vm\n"


# --- dib-init-system ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([], "systemd"),
        (["usr/lib/systemd/systemd"], "systemd"),
        (["sbin/openrc-run"], "openrc"),
        (["etc/inittab"], "sysv"),
    ],
)
def test_dib_init_system_detection(tmp_path: Path, files: list[str], expected: str) -> None:
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    env_file = ELEMENTS / "dib-init-system" / "environment.d" / "10-dib-init-system.bash"
    r = subprocess.run(
        ["bash", "-c", f'set -eu; . {env_file}; echo "$DIB_INIT_SYSTEM"'],
        env={**BASE_ENV, "TARGET_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected


# --- sysprep ----------------------------------------------------------------------------


def test_sysprep_leaves_nothing_machine_or_build_specific(tmp_path: Path) -> None:
    root = tmp_path / "root"
    files = {
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "var/lib/dbus/machine-id": "0123456789abcdef0123456789abcdef\n",
        "etc/ssh/ssh_host_ed25519_key": "PRIVATE",
        "etc/ssh/ssh_host_ed25519_key.pub": "PUBLIC",
        "etc/ssh/sshd_config": "# config\n",
        "usr/sbin/sshd": "",
        "etc/resolv.conf": Path("/etc/resolv.conf").read_text()
        if Path("/etc/resolv.conf").is_file()
        else "",
        "var/log/apt/history.log": "lots of log\n",
        "var/log/dpkg.log.1": "old\n",
        "var/log/syslog.2.gz": "old\n",
        "var/lib/apt/lists/deb_dists_bookworm_main_binary-amd64_Packages": "x",
        "var/lib/apt/lists/lock": "",
        "var/cache/apt/pkgcache.bin": "x",
        "var/cache/apt/archives/foo.deb": "x",
        "tmp/leftover/file": "x",
        "tmp/.hidden": "x",
        "var/tmp/x": "x",
        "root/.bash_history": "secret command",
        "var/lib/systemd/random-seed": "x",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "etc/systemd/system").mkdir(parents=True)
    r = bash(ELEMENTS / "sysprep" / "cleanup.d" / "95-sysprep", {"TARGET_ROOT": str(root)})
    assert r.returncode == 0, r.stderr
    assert (root / "etc/machine-id").read_text() == ""
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    unit = root / "etc/systemd/system/dibpy-ssh-host-keys.service"
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/dibpy-ssh-host-keys.service"
    assert os.readlink(wants) == "../dibpy-ssh-host-keys.service"
    assert (root / "etc/resolv.conf").read_text() == ""
    assert (root / "var/log/apt/history.log").read_text() == ""
    assert (
        not (root / "var/log/dpkg.log.1").exists() and not (root / "var/log/syslog.2.gz").exists()
    )
    assert sorted(p.name for p in (root / "var/lib/apt/lists").iterdir()) == ["lock"]
    assert not (root / "var/cache/apt/pkgcache.bin").exists()
    assert not (root / "var/cache/apt/archives/foo.deb").exists()
    assert list((root / "tmp").iterdir()) == [] and list((root / "var/tmp").iterdir()) == []
    assert not (root / "root/.bash_history").exists()
    assert not (root / "var/lib/systemd/random-seed").exists()


def test_sysprep_leaves_host_keys_to_runtime_ssh_host_keys(tmp_path: Path) -> None:
    """With runtime-ssh-host-keys' unit in the image (openssh-server pulls it in), sysprep
    removes the keys but adds no second unit running ssh-keygen at boot."""
    root = tmp_path / "root"
    theirs = root / "etc/systemd/system/dib-ssh-host-keys.service"
    for rel in ("etc/ssh/ssh_host_rsa_key", "usr/sbin/sshd"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    theirs.parent.mkdir(parents=True)
    theirs.write_text("[Service]\nExecStart=/usr/bin/ssh-keygen -A\n")
    r = bash(ELEMENTS / "sysprep" / "cleanup.d" / "95-sysprep", {"TARGET_ROOT": str(root)})
    assert r.returncode == 0, r.stderr
    assert list((root / "etc/ssh").iterdir()) == []
    units = sorted(p.name for p in (root / "etc/systemd/system").rglob("*ssh*"))
    assert units == ["dib-ssh-host-keys.service"]


def test_sysprep_links_resolved_stub_and_refuses_slash(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "usr/lib/systemd/systemd-resolved").write_text("")
    (root / "etc").mkdir()
    (root / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    r = bash(ELEMENTS / "sysprep" / "cleanup.d" / "95-sysprep", {"TARGET_ROOT": str(root)})
    assert r.returncode == 0, r.stderr
    assert os.readlink(root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    r = bash(ELEMENTS / "sysprep" / "cleanup.d" / "95-sysprep", {"TARGET_ROOT": "/"})
    assert r.returncode == 1 and "refusing" in r.stderr


# --- devuser (host side) ---------------------------------------------------------------


def test_devuser_stages_authorized_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys.pub"
    keys.write_text("ssh-ed25519 AAAA test@host\n")
    hook = ELEMENTS / "devuser" / "extra-data.d" / "50-devuser-keys"
    tree = tmp_path / "hooks"
    r = bash(hook, {"TMP_HOOKS_PATH": str(tree), "DIB_DEV_USER_AUTHORIZED_KEYS": str(keys)})
    assert r.returncode == 0, r.stderr
    assert (tree / "devuser/authorized_keys").read_text() == keys.read_text()
    r = bash(hook, {"TMP_HOOKS_PATH": str(tree), "DIB_DEV_USER_AUTHORIZED_KEYS": "/nope"})
    assert r.returncode == 1 and "/nope is not a file" in r.stderr


# --- source-repositories ---------------------------------------------------------------

GET_ARRAY = (
    'echo "$IMAGE_ELEMENT_YAML" | while IFS=": " read -r k v; do printf "[%s]=%s " "$k" "$v"; done'
)


def test_source_repositories_git_tar_and_overrides(tmp_path: Path) -> None:
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    repo = tmp_path / "upstream"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "one"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=git_env)
    (repo / "f.txt").write_text("v2\n")
    subprocess.run(["git", "-C", str(repo), "add", "f.txt"], check=True, env=git_env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "two"], check=True, env=git_env)
    first = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD~1"], capture_output=True, text=True, check=True
    ).stdout.strip()
    src = tmp_path / "src" / "proj-1.0"
    src.mkdir(parents=True)
    (src / "README").write_text("tarball\n")
    tarball = tmp_path / "proj.tar.gz"
    subprocess.run(
        ["tar", "-C", str(tmp_path / "src"), "-czf", str(tarball), "proj-1.0"], check=True
    )

    el = tmp_path / "els" / "app"
    el.mkdir(parents=True)
    (el / "source-repository-app").write_text(
        f"# comment\napp git /opt/app {repo} main\n"
        f"app-pinned git /opt/pinned {repo}\n"
        f"app-tar tar /opt/tar file://{tarball}\n"
    )
    tree = tmp_path / "hooks"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "cache-url").symlink_to(CACHE_URL)
    root = tmp_path / "root"
    root.mkdir()
    env = {
        "TARGET_ROOT": str(root),
        "TMP_HOOKS_PATH": str(tree),
        "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
        "IMAGE_ELEMENT_YAML": f"app: {el}",
        "BASH_FUNC_get_image_element_array%%": "() { " + GET_ARRAY + "; }",
        "DIB_REPOREF_app_pinned": first,
    }
    hook = ELEMENTS / "source-repositories" / "extra-data.d" / "98-source-repositories"
    r = bash(hook, env)
    assert r.returncode == 0, r.stderr
    assert (root / "opt/app/f.txt").read_text() == "v2\n"
    assert not (root / "opt/pinned/f.txt").exists(), "DIB_REPOREF_app_pinned picks the first commit"
    assert (root / "opt/tar/README").read_text() == "tarball\n"
    manifest = (root / "etc/dib-manifests/dib-source-repositories").read_text()
    assert f"app-pinned git /opt/pinned {repo} {first}" in manifest
    # offline: the cached mirror is enough, even when the upstream is gone
    subprocess.run(["rm", "-rf", str(repo)], check=True)
    r = bash(hook, {**env, "DIB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    (el / "source-repository-app").write_text("bad svn /opt/x http://x\n")
    r = bash(hook, env)
    assert r.returncode == 1 and "type svn is not git, tar, file or package" in r.stderr
