"""diskimage-builder's small configuration elements, written for dibpy, in a real build.

Two trees are built from the same cached Debian bootstrap with the real pipeline (root,
chroot, the Debian archive): a baseline (a kernel-less Debian with stand-in kernels, and
a test element that snapshots the tree at the end of cleanup.d) and the same plus
modprobe (with modprobe-blacklist), disable-nouveau, sysctl, apt-sources, apt-conf,
apt-preferences, cloud-init, cloud-init-nocloud, cloud-init-growpart,
cloud-init-disable-resizefs, local-config, element-manifest, cleanup-kernel-initrd,
dib-python, pypi, pip-cache, autoupdates, fail2ban, nm-dhcp-ib-interfaces and iscsi-boot, each with
its variables set.  Each test checks what one element changed.  Hooks that cannot act
on Debian (disable-selinux), would disturb the build (local-config's proxy) or need a
kernel with headers (dkms, with a stand-in dkms command) are run in the built tree
afterwards; posix's package list is resolved by apt in that tree.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, chroot_works, mounts_under, write, write_test_debian
from tests.integration.test_elements_debian_tree import HOST_SOURCES, archive_reachable

DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]
ELEMENTS = REPO / "elements"
NEW = [
    "modprobe", "modprobe-blacklist", "disable-nouveau", "sysctl", "apt-sources", "apt-conf",
    "apt-preferences", "cloud-init", "cloud-init-nocloud", "cloud-init-growpart",
    "cloud-init-disable-resizefs", "local-config", "element-manifest",
    "cleanup-kernel-initrd", "dib-python", "pypi", "pip-cache", "autoupdates", "fail2ban",
    "nm-dhcp-ib-interfaces", "iscsi-boot",
]  # fmt: skip
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBATCH local-config@dibpy"
PROBE = uuid.uuid4().hex[:12]


def make_test_elements(root: Path) -> Path:
    els = root / "elements"
    write_test_debian(els)
    write(els / "fake-kernels/README.rst", "Stand-in kernels in /boot.\n")
    write(
        els / "fake-kernels/install.d/10-fake-kernels",
        "#!/bin/bash\nset -eu -o pipefail\nmkdir -p /boot\n"
        "for v in 6.1.0-9-amd64 6.1.0-10-amd64 6.1.0-11-amd64; do\n"
        '  echo k > "/boot/vmlinuz-$v"; echo i > "/boot/initrd.img-$v"\n'
        '  echo m > "/boot/System.map-$v"\ndone\n',
        0o755,
    )
    write(els / "snap/README.rst", "Snapshot the finished tree.\n")
    write(
        els / "snap/cleanup.d/99-snap",
        '#!/bin/bash\nset -eu -o pipefail\ncp -a "$TARGET_ROOT" "$SNAP_OUT"\n',
        0o755,
    )
    # what an element using the new ones does in the build, recorded in /root/probe
    write(els / "probe/README.rst", "Uses sysctl, dib-python, pypi and pip-cache.\n")
    # services are enabled with systemctl (test-debian has no systemd of its own)
    write(els / "probe/package-installs.yaml", "systemd:\n")
    write(
        els / "probe/root.d/50-probe-sources",
        '#!/bin/bash\nset -eu -o pipefail\necho "# added in root.d" >> '
        '"$TARGET_ROOT/etc/apt/sources.list"\n',
        0o755,
    )
    # no python3 in the bootstrap: dib-python's pre-install.d installs it
    write(
        els / "probe/install.d/70-probe",
        "#!/bin/bash\nset -eu -o pipefail\nmkdir -p /root/probe\ncd /root/probe\n"
        "sysctl-set-value net.ipv4.ip_forward 1\n"
        "sysctl-write-value net/netfilter/nf_conntrack_max 262144\n"
        "if sysctl-set-value no.such.parameter 1 2> sysctl-bad.err; then exit 1; fi\n"
        "readlink /usr/local/bin/dib-python > dib-python.link\n"
        "/usr/local/bin/dib-python -c 'import sys; print(sys.version_info[0])'"
        " > dib-python.version\n"
        'echo "$DIB_PYTHON $DIB_PYTHON_VERSION" > dib-python.env\n'
        "cp /etc/pip.conf pip.conf\nls /tmp/pypi > pypi.ls\n"
        'echo "$PIP_CACHE_DIR $PIP_DOWNLOAD_CACHE" > pip-cache.env\n'
        'touch "/tmp/pip/probe-$PROBE"\n',
        0o755,
    )
    return els


def run_build(
    root: Path, cache: Path, elements: list[str], **env: str
) -> subprocess.CompletedProcess[str]:
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    full.update(
        ELEMENTS_PATH=str(make_test_elements(root)),
        TMP_DIR=str(root / "tmp"),
        DIB_IMAGE_CACHE=str(cache),
        SNAP_OUT=str(root / "snap"),
        **env,
    )
    return subprocess.run(
        [*DIC, "--no-cache", "-o", str(root / "out/img"), "test-debian", "fake-kernels",
         *elements, "no-final-image", "snap"],
        env=full, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def build(root: Path, cache: Path, elements: list[str], **env: str) -> Path:
    r = run_build(root, cache, elements, **env)
    assert r.returncode == 0, r.stderr[-6000:]
    assert not mounts_under(root), "pip-cache's and pypi's bind mounts are undone"
    (root / "build.log").write_text(r.stdout + r.stderr)
    return root / "snap"


def apt_sources_file(path: Path) -> Path:
    out = subprocess.run([sys.executable, str(HOST_SOURCES)], capture_output=True, text=True)
    mirrors = dict(ln.split("=", 1) for ln in out.stdout.splitlines())
    mirror = os.environ.get("DIB_DISTRIBUTION_MIRROR") or mirrors["mirror"]
    path.write_text(f"# dibpy apt-sources probe\ndeb {mirror} bookworm main\n")
    return path


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    shared = os.environ.get("DIBPY_TEST_IMAGE_CACHE")
    cache = Path(shared) if shared else tmp_path_factory.mktemp("cache")
    base = build(tmp_path_factory.mktemp("baseline"), cache, [])
    inputs = tmp_path_factory.mktemp("inputs")
    home = inputs / "home"
    write(home / ".ssh/authorized_keys", KEY + "\n")
    write(inputs / "apt.conf", '// dibpy apt-conf probe\nAcquire::Retries "5";\n')
    write(
        inputs / "manifest", "less 999:1.0-probe amd64\n# comment\n\nii  bc  2.0-probe  amd64  x\n"
    )
    write(inputs / "50unattended-upgrades", '// probe\nUnattended-Upgrade::Mail "root";\n')
    write(inputs / "jail.local", "[sshd]\nenabled = true\n# dibpy probe\n")
    mirror = cache / "pypi/mirror"
    write(mirror / f"probe-{PROBE}/index.html", "<html></html>\n")
    try:
        tree = build(
            tmp_path_factory.mktemp("with"),
            cache,
            [*NEW, "probe"],
            HOME=str(home),
            PROBE=PROBE,
            DIB_DISABLE_APT_CLEANUP="1",  # posix's packages are resolved in the tree
            DIB_MODPROBE_BLACKLIST="floppy, pcspkr",
            DIB_APT_SOURCES=str(apt_sources_file(inputs / "sources.list")),
            DIB_APT_CONF=str(inputs / "apt.conf"),
            DIB_DPKG_MANIFEST=str(inputs / "manifest"),
            DIB_CLOUD_INIT_ALLOW_SSH_PWAUTH="yes",
            DIB_CLOUD_INIT_GROWPART_DEVICES="/dev/vda1, /",
            DIB_PYPI_MIRROR_URL_1="http://mirror-one.example/simple",
            DIB_PIP_RETRIES="0",
            DIB_DEB_UPDATES_CONF=str(inputs / "50unattended-upgrades"),
            DIB_FAIL2BAN_CONF=str(inputs / "jail.local"),
        )
        assert (cache / f"pip/probe-{PROBE}").exists(), "pip-cache: /tmp/pip is the host's cache"
    finally:
        shutil.rmtree(mirror / f"probe-{PROBE}", ignore_errors=True)
        (cache / f"pip/probe-{PROBE}").unlink(missing_ok=True)
    return base, tree, inputs


def installed(root: Path) -> set[str]:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package} ${Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.endswith(" installed")}


def log(tree: Path) -> str:
    return (tree.parent / "build.log").read_text()


def test_modprobe_installs_element_files_and_blacklists_once(
    trees: tuple[Path, Path, Path],
) -> None:
    base, tree, _ = trees
    assert not (base / "etc/modprobe.d/disable-nouveau.conf").exists()
    assert not (base / "etc/modprobe.d/blacklist.conf").exists()
    nouveau = (tree / "etc/modprobe.d/disable-nouveau.conf").read_text().splitlines()
    assert "blacklist nouveau" in nouveau and "options nouveau modeset=0" in nouveau
    # modprobe and modprobe-blacklist both handle DIB_MODPROBE_BLACKLIST: no line twice
    lines = (tree / "etc/modprobe.d/blacklist.conf").read_text().splitlines()
    assert lines == ["blacklist floppy", "blacklist pcspkr"]


def test_sysctl_commands(trees: tuple[Path, Path, Path]) -> None:
    base, tree, _ = trees
    d = tree / "etc/sysctl.d"
    assert (d / "net.ipv4.ip_forward.conf").read_text() == "net.ipv4.ip_forward = 1\n"
    conntrack = (d / "net.netfilter.nf_conntrack_max.conf").read_text()
    assert conntrack == "net.netfilter.nf_conntrack_max = 262144\n"
    assert not (base / "etc/sysctl.d/net.ipv4.ip_forward.conf").exists()
    err = (tree / "root/probe/sysctl-bad.err").read_text()
    assert "no.such.parameter" in err and len(err.splitlines()) == 1
    assert not list(d.glob("no.such*"))


def test_apt_sources_conf_preferences(trees: tuple[Path, Path, Path]) -> None:
    base, tree, inputs = trees
    # the probe appended a line in root.d; apt-sources (extra-data.d) replaced the file
    assert "running root.d/50-probe-sources (probe)" in log(tree)
    assert "dibpy apt-sources probe" not in (base / "etc/apt/sources.list").read_text()
    assert (tree / "etc/apt/sources.list").read_text() == (inputs / "sources.list").read_text()
    assert (tree / "etc/apt/apt.conf").read_text() == (inputs / "apt.conf").read_text()
    assert not (base / "etc/apt/apt.conf").exists()
    dump = subprocess.run(
        ["chroot", str(tree), "apt-config", "dump"], capture_output=True, text=True, check=True
    ).stdout
    assert 'Acquire::Retries "5";' in dump.splitlines()
    assert (tree / "etc/apt/preferences").read_text() == (
        "Package: less\nPin: version 999:1.0-probe\nPin-Priority: 1001\n\n"
        "Package: bc\nPin: version 2.0-probe\nPin-Priority: 1001\n\n"
    )
    assert not (base / "etc/apt/preferences").exists()


def test_cloud_init_family(trees: tuple[Path, Path, Path]) -> None:
    base, tree, _ = trees
    pkgs, base_pkgs = installed(tree), installed(base)
    assert {"cloud-init", "cloud-guest-utils"} <= pkgs
    assert not {"cloud-init", "cloud-guest-utils"} & base_pkgs
    wants = tree / "etc/systemd/system"
    enabled = {p.name for p in wants.rglob("cloud-*.service") if p.is_symlink()}
    assert {"cloud-init-local.service", "cloud-config.service", "cloud-final.service"} <= enabled
    cfgd = tree / "etc/cloud/cloud.cfg.d"
    assert (cfgd / "92-dib-ssh-pwauth.cfg").read_text().splitlines()[-1] == "ssh_pwauth: true"
    # nocloud: the datasource and empty seeds
    ds = (cfgd / "91-dib-cloud-init-datasources.cfg").read_text()
    assert ds == "datasource_list: [ NoCloud ]\n"
    seed = tree / "var/lib/cloud/seed/nocloud"
    assert (seed / "meta-data").read_text() == "" and (seed / "user-data").read_text() == ""
    # growpart
    grow = yaml.safe_load((cfgd / "91-dib-cloud-init-growpart.cfg").read_text())
    assert grow == {
        "growpart": {"mode": "auto", "devices": ["/dev/vda1", "/"],
                     "ignore_growroot_disabled": False}
    }  # fmt: skip
    # disable-resizefs: the package's cloud.cfg listed both modules; ours does not
    verify = subprocess.run(
        ["chroot", str(tree), "dpkg", "--verify", "cloud-init"], capture_output=True, text=True
    ).stdout
    assert any(ln.endswith(" /etc/cloud/cloud.cfg") for ln in verify.splitlines()), verify
    cfg = yaml.safe_load((tree / "etc/cloud/cloud.cfg").read_text())
    modules = json.dumps([cfg.get(k) for k in cfg if k.endswith("_modules")])
    assert "resizefs" not in modules and "growpart" not in modules
    assert "ssh" in modules, "the other modules are kept"


def test_local_config_keys_and_element_manifest(trees: tuple[Path, Path, Path]) -> None:
    base, tree, _ = trees
    ak = tree / "root/.ssh/authorized_keys"
    assert ak.read_text() == KEY + "\n"
    assert oct(ak.stat().st_mode & 0o777) == "0o600"
    assert oct((tree / "root/.ssh").stat().st_mode & 0o777) == "0o700"
    assert not (base / "root/.ssh/authorized_keys").exists()
    names = (tree / "etc/dib-manifests/element-manifest").read_text().splitlines()
    assert set(NEW) | {"probe", "test-debian", "manifests", "package-installs"} <= set(names)
    assert len(names) == len(set(names))
    assert not (base / "etc/dib-manifests/element-manifest").exists()


def test_cleanup_kernel_initrd_keeps_the_boot_pair(trees: tuple[Path, Path, Path]) -> None:
    base, tree, _ = trees
    assert len(list((base / "boot").glob("vmlinuz-*"))) == 3
    kept = sorted(p.name for p in (tree / "boot").iterdir())
    # only kernels and initramfs go; other files of old versions stay
    assert kept == [
        "System.map-6.1.0-10-amd64", "System.map-6.1.0-11-amd64", "System.map-6.1.0-9-amd64",
        "initrd.img-6.1.0-11-amd64", "vmlinuz-6.1.0-11-amd64",
    ]  # fmt: skip


def test_dib_python_during_the_build_only(trees: tuple[Path, Path, Path]) -> None:
    _, tree, _ = trees
    probe = tree / "root/probe"
    assert (probe / "dib-python.link").read_text().strip().endswith("/python3")
    assert (probe / "dib-python.version").read_text() == "3\n"
    assert (probe / "dib-python.env").read_text() == "python3 3\n"
    assert (
        not (tree / "usr/local/bin/dib-python").exists()
        and not (tree / "usr/local/bin/dib-python").is_symlink()
    )


def test_pypi_mirror_for_install_d_then_gone(trees: tuple[Path, Path, Path]) -> None:
    _, tree, _ = trees
    probe = tree / "root/probe"
    conf = (probe / "pip.conf").read_text()
    # online: pip's default index stays, the mirrors come in addition, in order
    assert "index-url =" not in conf.replace("extra-index-url", "")
    assert "extra-index-url =\n    file:///tmp/pypi\n    http://mirror-one.example/simple\n" in conf
    assert "retries = 0" in conf.splitlines()
    assert f"probe-{PROBE}" in (probe / "pypi.ls").read_text().split()
    assert (
        not (tree / "etc/pip.conf").exists() and not (tree / "etc/pip.conf.dib-pypi-saved").exists()
    )
    assert (probe / "pip-cache.env").read_text() == "/tmp/pip /tmp/pip\n"
    assert not list((tree / "tmp").glob("pip*/*")), "the caches were unmounted"


def test_autoupdates_and_fail2ban(trees: tuple[Path, Path, Path]) -> None:
    base, tree, inputs = trees
    pkgs = installed(tree)
    assert {"unattended-upgrades", "fail2ban"} <= pkgs
    assert not {"unattended-upgrades", "fail2ban"} & installed(base)
    confd = tree / "etc/apt/apt.conf.d"
    assert (confd / "50unattended-upgrades").read_text() == (
        inputs / "50unattended-upgrades"
    ).read_text()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in (confd / "20auto-upgrades").read_text()
    wants = tree / "etc/systemd/system"
    assert (wants / "timers.target.wants/apt-daily-upgrade.timer").is_symlink()
    assert (wants / "multi-user.target.wants/unattended-upgrades.service").is_symlink()
    assert (tree / "etc/fail2ban/jail.local").read_text() == (inputs / "jail.local").read_text()
    assert (wants / "multi-user.target.wants/fail2ban.service").is_symlink()


def run_hook_in(tree: Path, hook: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy2(hook, tree / "tmp" / hook.name)
    try:
        return subprocess.run(
            ["chroot", str(tree), "env", "-i", f"PATH={CHROOT_PATH}",
             *(f"{k}={v}" for k, v in env.items()), "bash", f"/tmp/{hook.name}"],
            capture_output=True, text=True,
        )  # fmt: skip
    finally:
        (tree / "tmp" / hook.name).unlink()


def test_disable_selinux_in_the_tree(trees: tuple[Path, Path, Path]) -> None:
    _, tree, _ = trees
    hook = ELEMENTS / "disable-selinux/post-install.d/15-disable-selinux"
    r = run_hook_in(tree, hook)
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr
    cfg = tree / "etc/selinux/config"
    write(cfg, "# SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n")
    try:
        r = run_hook_in(tree, hook)
        assert r.returncode == 0, r.stderr
        assert cfg.read_text() == "# SELinux\nSELINUX=disabled\nSELINUXTYPE=targeted\n"
    finally:
        shutil.rmtree(tree / "etc/selinux")


def test_local_config_proxy_in_the_tree(trees: tuple[Path, Path, Path]) -> None:
    _, tree, _ = trees
    hook = ELEMENTS / "local-config/pre-install.d/02-local-config-proxy"
    profile = tree / "etc/profile.d/local-config-proxy.sh"
    aptconf = tree / "etc/apt/apt.conf.d/60local-config-proxy"
    try:
        r = run_hook_in(
            tree, hook, http_proxy="http://proxy.example:3128", no_proxy="localhost,.internal"
        )
        assert r.returncode == 0, r.stderr
        sourced = subprocess.run(
            ["chroot", str(tree), "sh", "-c", '. /etc/profile.d/local-config-proxy.sh; '
             'echo "$http_proxy|$no_proxy|${https_proxy:-unset}"'],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert sourced == "http://proxy.example:3128|localhost,.internal|unset\n"
        dump = subprocess.run(
            ["chroot", str(tree), "apt-config", "dump"], capture_output=True, text=True, check=True
        ).stdout
        assert 'Acquire::http::Proxy "http://proxy.example:3128";' in dump.splitlines()
    finally:
        profile.unlink(missing_ok=True)
        aptconf.unlink(missing_ok=True)
    r = run_hook_in(tree, hook)
    assert r.returncode == 0 and not profile.exists() and not aptconf.exists()


def test_posix_packages_resolve_on_debian(trees: tuple[Path, Path, Path]) -> None:
    _, tree, _ = trees
    names = list(yaml.safe_load((ELEMENTS / "posix/package-installs.yaml").read_text()))
    r = subprocess.run(
        ["chroot", str(tree), "apt-get", "-s", "-q", "-o", "Dir::Etc::Preferences=/dev/null",
         "install", *names],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    will = {ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("Inst ")}
    for pkg in ("gcc", "bc", "cssc", "pax", "at", "mailutils"):
        assert pkg in will or pkg in installed(tree)
    assert (ELEMENTS / "posix/element-deps").read_text().split() == ["openssh-server"]


@pytest.mark.parametrize(
    ("element", "env", "culprit"),
    [
        ("cloud-init-growpart", {}, "DIB_CLOUD_INIT_GROWPART_DEVICES"),
        ("fail2ban", {"DIB_FAIL2BAN_CONF": "/nonexistent/jail.local"}, "DIB_FAIL2BAN_CONF"),
        ("autoupdates", {}, "DIB_DEB_UPDATES_CONF"),
    ],
)
def test_required_or_bad_variable_fails_naming_it(
    tmp_path: Path, element: str, env: dict[str, str], culprit: str
) -> None:
    reason = chroot_works() or archive_reachable()
    if reason:
        pytest.skip(reason)
    shared = os.environ.get("DIBPY_TEST_IMAGE_CACHE")
    cache = Path(shared) if shared else tmp_path / "cache"
    r = run_build(tmp_path, cache, [element], **env)
    assert r.returncode != 0
    assert culprit in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert not mounts_under(tmp_path)
    assert not (tmp_path / "snap").exists()


def test_nm_dhcp_ib_interfaces_profile(trees: tuple[Path, Path, Path]) -> None:
    base, tree, _ = trees
    rel = "etc/NetworkManager/system-connections/infiniband.nmconnection"
    assert not (base / rel).exists()
    f = tree / rel
    assert oct(f.stat().st_mode & 0o777) == "0o600" and f.stat().st_uid == 0
    profile = configparser.ConfigParser()
    profile.read_string(f.read_text())
    assert profile["connection"]["type"] == "infiniband"
    assert "interface-name" not in profile["connection"], "a wildcard profile"
    assert profile["connection"]["multi-connect"] == "3"
    assert profile["ipv4"]["method"] == "auto"


def test_dkms_builds_for_the_image_kernels_with_headers(trees: tuple[Path, Path, Path]) -> None:
    _, tree, _ = trees
    fake = tree / "usr/local/sbin/dkms"
    made = [tree / "lib/modules/6.1.0-11-amd64/build", tree / "lib/modules/6.1.0-9-amd64"]
    write(fake, '#!/bin/sh\necho "$@" >> /tmp/dkms.calls\n', 0o755)
    for d in made:
        d.mkdir(parents=True)
    try:
        r = run_hook_in(tree, ELEMENTS / "dkms/post-install.d/97-dkms")
        assert r.returncode == 0, r.stderr
        assert (tree / "tmp/dkms.calls").read_text() == "autoinstall -k 6.1.0-11-amd64\n"
        assert "no headers for kernel 6.1.0-9-amd64" in r.stdout
    finally:
        fake.unlink()
        (tree / "tmp/dkms.calls").unlink(missing_ok=True)
        shutil.rmtree(tree / "lib/modules/6.1.0-11-amd64")
        shutil.rmtree(tree / "lib/modules/6.1.0-9-amd64")


def test_iscsi_boot_on_debian(trees: tuple[Path, Path, Path]) -> None:
    base, tree, _ = trees
    assert "open-iscsi" in installed(tree) and "open-iscsi" not in installed(base)
    assert (tree / "etc/iscsi/iscsi.initramfs").read_text() == "ISCSI_AUTO=true\n"
