"""tpm-emulator, keylime-agent, python-stow-versions, rax-nova-agent and oat-client, their
hooks run for real against temporary trees (see test_elements_new_hooks.py for the tree:
a chroot whose /usr is an overlay over the host's).  rax-nova-agent's downloads come
from a web server on 127.0.0.1 through source-repositories, as a user would point
DIB_REPOLOCATION_* at a local copy; the real download is tried only when its host answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, serve_directory, url_of, write
from tests.integration.test_elements_new_hooks import (
    calls,
    in_chroot,
    one_line_error,
    stand_in,
    tree,  # noqa: F401  (the fixture)
)

ELEMENTS = REPO / "elements"
GET_ARRAY = (
    'echo "$IMAGE_ELEMENT_YAML" | while IFS=": " read -r k v; do printf "[%s]=%s " "$k" "$v"; done'
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as server:
        yield root, url_of(server)


# ---------------------------------------------------------------- tpm-emulator

TPM = ELEMENTS / "tpm-emulator/post-install.d/89-tpm-emulator"


def test_tpm_emulator_adds_and_enables_the_swtpm_service(tree: Path) -> None:  # noqa: F811
    stand_in(tree, "systemctl")
    r = in_chroot(tree, TPM)
    assert r.returncode == 0, r.stderr
    unit = (tree / "etc/systemd/system/tpm-emulator.service").read_text()
    assert "ExecStart=/usr/bin/swtpm socket --tpm2" in unit
    assert "port=2321" in unit and "port=2322" in unit
    dropin = tree / "etc/systemd/system/tpm2-abrmd.service.d/10-tcti-emulator.conf"
    assert "--tcti=swtpm:host=127.0.0.1,port=2321" in dropin.read_text()
    assert (tree / "var/lib/swtpm/tpm0").is_dir()
    assert calls(tree, "systemctl") == ["enable tpm-emulator.service", "enable tpm2-abrmd.service"]


# ---------------------------------------------------------------- keylime-agent

KEYLIME_ENV = ELEMENTS / "keylime-agent/environment.d/16-keylime-agent"
KEYLIME = ELEMENTS / "keylime-agent/post-install.d/90-keylime-agent"


def keylime_env(**over: str) -> dict[str, str]:
    names = "DIB_KEYLIME_AGENT_REGISTRAR_IP DIB_KEYLIME_AGENT_REGISTRAR_PORT DIB_KEYLIME_AGENT_PORT"
    script = f'source {KEYLIME_ENV}; for v in {names}; do echo "$v=${{!v}}"; done'
    out = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", **over},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.splitlines())


def test_keylime_agent_defaults_are_diskimage_builders() -> None:
    assert keylime_env() == {
        "DIB_KEYLIME_AGENT_REGISTRAR_IP": "0",
        "DIB_KEYLIME_AGENT_REGISTRAR_PORT": "8890",
        "DIB_KEYLIME_AGENT_PORT": "9002",
    }


def test_keylime_agent_configures_the_registrar_and_enables_the_agent(
    tree: Path,  # noqa: F811
) -> None:
    stand_in(tree, "systemctl")
    write(tree / "tmp/keylime/keylime.conf", "[general]\nx = 1\n[cloud_agent]\nregistrar_ip = 9\n")
    env = keylime_env(DIB_KEYLIME_AGENT_REGISTRAR_IP="192.0.2.7")
    r = in_chroot(tree, KEYLIME, **env)
    assert r.returncode == 0, r.stderr
    conf = (tree / "etc/keylime.conf").read_text()
    assert "[general]\nx = 1" in conf, "the shipped settings are kept"
    assert "registrar_ip = 192.0.2.7" in conf and "registrar_ip = 9" not in conf
    assert "registrar_port = 8890" in conf and "cloudagent_port = 9002" in conf
    assert "ExecStart=" in (tree / "etc/systemd/system/keylime-agent.service").read_text()
    assert calls(tree, "systemctl") == ["enable keylime-agent.service"]


def test_keylime_agent_bad_port_is_one_line(tree: Path) -> None:  # noqa: F811
    stand_in(tree, "systemctl")
    r = in_chroot(tree, KEYLIME, **keylime_env(DIB_KEYLIME_AGENT_REGISTRAR_PORT="http"))
    one_line_error(r, "DIB_KEYLIME_AGENT_REGISTRAR_PORT", "not a port number")
    assert calls(tree, "systemctl") == []


def test_keylime_agent_without_the_checkout_is_one_line(tree: Path) -> None:  # noqa: F811
    r = in_chroot(tree, ELEMENTS / "keylime-agent/install.d/80-keylime-agent")
    one_line_error(r, "/tmp/keylime", "DIB_REPOLOCATION_keylime")


# ---------------------------------------------------------------- python-stow-versions

STOW = ELEMENTS / "python-stow-versions/install.d/70-python-build"
DEFINITIONS = "2.7.17\n2.7.18\n3.8.9\n3.8.19\n3.9.2\n3.12.0\n3.12.4\n3.13.0a1\npypy3.9-7.3.9\n"


def fake_pyenv(root: Path) -> None:
    """A /pyenv whose python-build lists DEFINITIONS and records what it builds."""
    build = (
        "#!/bin/bash\nset -eu\n"
        f"if [ \"$1\" = --definitions ]; then printf '{DEFINITIONS}'; exit 0; fi\n"
        'echo "$*" >> /tmp/python-build.calls\nmkdir -p "$2/bin"\n'
    )
    install = f"#!/bin/bash\nset -eu\ncat > /usr/local/bin/python-build <<'EOF'\n{build}EOF\n"
    install += "chmod +x /usr/local/bin/python-build\n"
    write(root / "pyenv/plugins/python-build/install.sh", install, 0o755)


def test_python_stow_versions_builds_the_newest_patch_of_each_version(
    tree: Path,  # noqa: F811
) -> None:
    fake_pyenv(tree)
    r = in_chroot(tree, STOW, DIB_PYTHON_VERSIONS="2.7,3.8,3.12")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "python-build") == [
        "2.7.18 /usr/local/stow/python-2.7.18",
        "3.8.19 /usr/local/stow/python-3.8.19",
        "3.12.4 /usr/local/stow/python-3.12.4",
    ]
    r = in_chroot(tree, ELEMENTS / "python-stow-versions/post-install.d/70-python-build")
    assert r.returncode == 0, r.stderr
    assert not (tree / "pyenv").exists()
    assert (upper_usr(tree) / "local/stow/python-3.12.4/bin").is_dir(), "the builds stay"
    assert not (upper_usr(tree) / "local/bin/python-build").exists()


def upper_usr(root: Path) -> Path:
    return root.parent / "upper"


def test_python_stow_versions_unknown_versions_is_one_line(tree: Path) -> None:  # noqa: F811
    fake_pyenv(tree)
    r = in_chroot(tree, STOW, DIB_PYTHON_VERSIONS="4.1")
    one_line_error(r, "DIB_PYTHON_VERSIONS=4.1")


# ---------------------------------------------------------------- rax-nova-agent

RAX = ELEMENTS / "rax-nova-agent"


def fake_nova_agent(www: Path) -> None:
    installer = (
        "#!/bin/bash\nset -eu\nmkdir -p /etc/init.d\n"
        "printf '#!/bin/sh\\n' > /etc/init.d/nova-agent\necho installed > /tmp/installer.ran\n"
    )
    src = www.parent / "nova-agent-src"
    write(src / "installer.sh", installer, 0o755)
    with tarfile.open(www / "nova-agent.tar.gz", "w:gz") as t:
        t.add(src / "installer.sh", arcname="installer.sh")
    (www / "xs-tools.iso").write_bytes(b"not really an iso\n")


def fetch_sources(tmp_path: Path, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    hooks = tmp_path / "hooks"
    (hooks / "bin").mkdir(parents=True, exist_ok=True)
    if not (hooks / "bin/cache-url").exists():
        (hooks / "bin/cache-url").symlink_to(ELEMENTS / "cache-url/bin/cache-url")
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TARGET_ROOT": str(root),
        "TMP_HOOKS_PATH": str(hooks),
        "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
        "IMAGE_ELEMENT_YAML": f"rax-nova-agent: {RAX}",
        "BASH_FUNC_get_image_element_array%%": "() { " + GET_ARRAY + "; }",
        **env,
    }
    hook = ELEMENTS / "source-repositories/extra-data.d/98-source-repositories"
    return subprocess.run(["bash", str(hook)], env=full, capture_output=True, text=True)


def test_rax_nova_agent_from_a_local_copy(
    tmp_path: Path,
    tree: Path,  # noqa: F811
    served: tuple[Path, str],
) -> None:
    www, url = served
    fake_nova_agent(www)
    r = fetch_sources(
        tmp_path,
        tree,
        DIB_REPOLOCATION_nova_agent=f"{url}/nova-agent.tar.gz",
        DIB_REPOLOCATION_xen_tools=f"{url}/xs-tools.iso",
    )
    assert r.returncode == 0, r.stderr
    assert (tree / "tmp/xs-tools.iso").read_bytes() == b"not really an iso\n"
    manifest = (tree / "etc/dib-manifests/dib-source-repositories").read_text()
    assert f"nova-agent tar /tmp/nova-agent {url}/nova-agent.tar.gz ." in manifest
    stand_in(tree, "systemctl")
    r = in_chroot(tree, RAX / "install.d/10-nova-agent")
    assert r.returncode == 0, r.stderr
    assert (tree / "tmp/installer.ran").exists()
    assert "ifdown -a" in (tree / "etc/cloud/cloud.cfg.d/80_restart_network.cfg").read_text()
    unit = (tree / "etc/systemd/system/nova-agent.service").read_text()
    assert "Before=cloud-init-local.service" in unit
    assert calls(tree, "systemctl") == ["enable nova-agent.service xe-linux-distribution.service"]


def test_rax_nova_agent_without_the_download_is_one_line(tree: Path) -> None:  # noqa: F811
    r = in_chroot(tree, RAX / "install.d/10-nova-agent")
    one_line_error(r, "/tmp/nova-agent", "DIB_REPOLOCATION_nova_agent")


def test_rax_nova_agent_real_download(tmp_path: Path) -> None:
    line = (RAX / "source-repository-nova-agent").read_text().split()
    location = line[3]
    try:
        urllib.request.urlopen(urllib.request.Request(location, method="HEAD"), timeout=5)
    except Exception as e:  # noqa: BLE001  (any failure: the host is unreachable from here)
        pytest.skip(f"nova-agent's upstream is unreachable from this host: {e}")
    root = tmp_path / "root"
    root.mkdir()
    r = fetch_sources(tmp_path, root)
    assert r.returncode == 0, r.stderr
    assert (root / "tmp/nova-agent/installer.sh").is_file()


# ---------------------------------------------------------------- oat-client


def test_oat_client_is_an_obsolete_stub_failing_with_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "bin/disk-image-create"), "-o", str(tmp_path / "x"),
         "oat-client"],
        capture_output=True, text=True, env={**os.environ, "TMP_DIR": str(tmp_path)},
    )  # fmt: skip
    assert r.returncode != 0
    assert "element 'oat-client' is obsolete" in r.stderr
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------- gentoo

GENTOO = ELEMENTS / "gentoo"
STAMP = "20261201T170358Z"


def fixture_stage3(www: Path, flavour: str = "openrc", corrupt: bool = False) -> str:
    """A tiny stage3 tarball laid out as the autobuilds directory publishes it."""
    import hashlib

    src = www.parent / "stage"
    write(src / "etc/os-release", "NAME=Gentoo\nID=gentoo\n")
    write(src / "bin/placeholder", "")
    name = f"stage3-amd64-{flavour}-{STAMP}.tar.xz"
    rel = f"{STAMP}/{name}"
    (www / "releases/amd64/autobuilds" / STAMP).mkdir(parents=True)
    tarball = www / "releases/amd64/autobuilds" / rel
    subprocess.run(["tar", "-C", str(src), "-cJf", str(tarball), "."], check=True)
    data = tarball.read_bytes()
    sha512 = hashlib.sha512(b"x" if corrupt else data).hexdigest()
    blake = hashlib.blake2b(data).hexdigest()
    (tarball.parent / f"{name}.DIGESTS").write_text(
        f"# BLAKE2B HASH\n{blake}  {name}\n# SHA512 HASH\n{sha512}  {name}\n"
        f"# BLAKE2B HASH\n{blake}  {name}.CONTENTS.gz\n"
    )
    (www / f"releases/amd64/autobuilds/latest-stage3-amd64-{flavour}.txt").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
        f"# Latest as of Tue, 01 Dec 2026 17:03:58 +0000\n# ts=1796144638\n"
        f"{rel} {len(data)}\n-----BEGIN PGP SIGNATURE-----\n\nnot checked here\n"
        "-----END PGP SIGNATURE-----\n"
    )
    return rel


def gentoo_root_d(tmp_path: Path, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    hooks = tmp_path / "hooks"
    (hooks / "bin").mkdir(parents=True, exist_ok=True)
    if not (hooks / "bin/cache-url").exists():
        (hooks / "bin/cache-url").symlink_to(ELEMENTS / "cache-url/bin/cache-url")
    shims = tmp_path / "shims"
    write(shims / "sudo", '#!/bin/sh\nexec "$@"\n', 0o755)
    script = (
        f"set -e; source {GENTOO / 'environment.d/00-gentoo-envars.bash'}; "
        f"exec bash {GENTOO / 'root.d/10-gentoo-image'}"
    )
    full = {
        "PATH": f"{shims}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "ARCH": "amd64",
        "TARGET_ROOT": str(root),
        "TMP_HOOKS_PATH": str(hooks),
        "DIB_IMAGE_CACHE": str(tmp_path / "cache"),
        **env,
    }
    return subprocess.run(["bash", "-c", script], env=full, capture_output=True, text=True)


def test_gentoo_unpacks_the_current_stage3_from_a_mirror(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    www, url = served
    fixture_stage3(www)
    root = tmp_path / "root"
    root.mkdir()
    r = gentoo_root_d(tmp_path, root, DIB_DISTRIBUTION_MIRROR=url)
    assert r.returncode == 0, r.stderr
    assert f"stage3-amd64-openrc-{STAMP}.tar.xz verified" in r.stdout
    assert "ID=gentoo" in (root / "etc/os-release").read_text()
    assert (root / "etc/resolv.conf").read_text().startswith("#")
    cached = tmp_path / "cache/gentoo-default-linux-amd64-23.0.tar.xz"
    assert cached.is_file()


def test_gentoo_systemd_profile_picks_the_systemd_stage(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    www, url = served
    fixture_stage3(www, flavour="systemd")
    root = tmp_path / "root"
    root.mkdir()
    profile = "default/linux/amd64/23.0/systemd"
    r = gentoo_root_d(tmp_path, root, DIB_DISTRIBUTION_MIRROR=url, GENTOO_PROFILE=profile)
    assert r.returncode == 0, r.stderr
    assert f"stage3-amd64-systemd-{STAMP}.tar.xz" in r.stdout
    out = subprocess.run(
        ["bash", "-c", f"source {GENTOO / 'environment.d/00-gentoo-envars.bash'}; "
         'echo "$DIB_INIT_SYSTEM $USE"'],
        env={"PATH": os.environ["PATH"], "ARCH": "amd64", "GENTOO_PROFILE": profile},
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out == ["systemd", "-build"]


def test_gentoo_checksum_mismatch_is_one_line(tmp_path: Path, served: tuple[Path, str]) -> None:
    www, url = served
    fixture_stage3(www, corrupt=True)
    root = tmp_path / "root"
    root.mkdir()
    r = gentoo_root_d(tmp_path, root, DIB_DISTRIBUTION_MIRROR=url)
    assert r.returncode != 0
    assert "does not match" in r.stderr.strip().splitlines()[-1]
    assert not (root / "etc").exists()
    assert not (tmp_path / "cache/gentoo-default-linux-amd64-23.0.tar.xz").exists()


def test_gentoo_without_a_mirror_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    r = gentoo_root_d(tmp_path, root)
    one_line_error(r, "DIB_DISTRIBUTION_MIRROR", "BASE_IMAGE_FILE")


def test_gentoo_unknown_profile_is_one_line(tmp_path: Path, served: tuple[Path, str]) -> None:
    www, url = served
    fixture_stage3(www)
    root = tmp_path / "root"
    root.mkdir()
    r = gentoo_root_d(
        tmp_path, root, DIB_DISTRIBUTION_MIRROR=url, GENTOO_PROFILE="default/linux/amd64/23.0/x"
    )
    assert r.returncode != 0
    assert "no stage list for profile default/linux/amd64/23.0/x" in r.stderr


def test_gentoo_real_mirror(tmp_path: Path) -> None:
    mirror = os.environ.get("DIBPY_TEST_GENTOO_MIRROR", "")
    if not mirror:
        pytest.skip("DIBPY_TEST_GENTOO_MIRROR is unset: no Gentoo mirror is reachable from CI")
    listing = f"{mirror.rstrip('/')}/releases/amd64/autobuilds/latest-stage3-amd64-openrc.txt"
    try:
        urllib.request.urlopen(listing, timeout=10).read(64)
    except Exception as e:  # noqa: BLE001  (any failure: the mirror is unreachable)
        pytest.skip(f"{listing} is unreachable: {e}")
    root = tmp_path / "root"
    root.mkdir()
    r = gentoo_root_d(tmp_path, root, DIB_DISTRIBUTION_MIRROR=mirror)
    assert r.returncode == 0, r.stderr
    assert "ID=gentoo" in (root / "etc/os-release").read_text()


# ---------------------------------------------------------------- dracut-ramdisk

DRR = ELEMENTS / "dracut-ramdisk"


def test_dracut_ramdisk_lists_every_elements_drivers_and_programs(tmp_path: Path) -> None:
    other = tmp_path / "my-element"
    write(other / "dracut-drivers.d/mine", "e1000 nvme\nvirtio\n")
    write(other / "binary-deps.d/mine", "lsblk\n")
    hooks = tmp_path / "hooks"
    r = subprocess.run(
        ["bash", str(DRR / "extra-data.d/50-dracut-ramdisk-lists")],
        env={"PATH": os.environ["PATH"], "TMP_HOOKS_PATH": str(hooks),
             "IMAGE_ELEMENT_YAML": f"dracut-ramdisk: {DRR}\nmy-element: {other}\n"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    drivers = (hooks / "dracut-ramdisk/drivers").read_text().split()
    assert drivers == ["e1000", "nvme", "virtio", "virtio_blk", "virtio_net"]
    assert "lsblk" in (hooks / "dracut-ramdisk/binaries").read_text().split()


def test_dracut_ramdisk_runs_dracut_for_the_newest_kernel(tree: Path) -> None:  # noqa: F811
    for kver in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (upper_usr(tree) / "lib/modules" / kver).mkdir(parents=True)  # /lib is /usr/lib
    write(tree / "tmp/in_target.d/dracut-ramdisk/drivers", "virtio\nvirtio_blk\n")
    write(tree / "tmp/in_target.d/dracut-ramdisk/binaries", "grep\nno-such-tool\n")
    for f in (DRR / "dracut-ramdisk-module").iterdir():
        write(tree / "tmp/in_target.d/dracut-ramdisk-module" / f.name, f.read_text())
    write(tree / "tmp/in_target.d/init.d/20-second", "echo second-fragment\n")
    write(tree / "tmp/in_target.d/init.d/10-first", "echo first-fragment\n")
    stand_in(tree, "dracut", 'echo initramfs > "${!#}"')
    r = in_chroot(tree, DRR / "post-install.d/99-build-dracut-ramdisk")
    assert r.returncode == 0, r.stderr
    assert "no-such-tool (binary-deps.d) is not in the image" in r.stdout
    [call] = calls(tree, "dracut")
    assert call.startswith("--no-hostonly --force --kver 6.1.0-10-amd64 ")
    assert "--add dib-ramdisk network-legacy" in call
    # the dracut module, its init made of the init.d fragments in name order
    mod = upper_usr(tree) / "lib/dracut/modules.d/90dib-ramdisk"
    assert (mod / "module-setup.sh").stat().st_mode & 0o111
    init = (mod / "dib-ramdisk-init").read_text()
    assert init.startswith("#!/bin/bash\n")
    assert init.index("first-fragment") < init.index("second-fragment") < init.index("finished")
    assert "--add-drivers virtio virtio_blk" in call and "--install /usr/bin/grep" in call
    assert call.endswith(" /boot/dracut-ramdisk.img")
    assert (tree / "boot/dracut-ramdisk.img").read_text() == "initramfs\n"


def test_dracut_ramdisk_without_a_kernel_is_one_line(tree: Path) -> None:  # noqa: F811
    stand_in(tree, "dracut")
    r = in_chroot(tree, DRR / "post-install.d/99-build-dracut-ramdisk")
    one_line_error(r, "/lib/modules", "needs a kernel")
    assert calls(tree, "dracut") == []


def test_dracut_ramdisk_hands_its_initramfs_to_ramdisk_base() -> None:
    env = (DRR / "environment.d/10-dracut-ramdisk.bash").read_text()
    assert "export DIB_RAMDISK_PREBUILT=/boot/dracut-ramdisk.img" in env
