"""dhcp-all-interfaces: the boot script's output per distribution and the install hook's
variants, run against a fake root, a fake /sys/class/net and fake ip/rdisc6/ifquery."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

ELEMENT = REPO / "elements/dhcp-all-interfaces"
SCRIPT = ELEMENT / "install.d/dhcp-all-interfaces.sh"
HOOK = ELEMENT / "install.d/50-dhcp-all-interfaces"
MACHINE_ID = "0123456789abcdef0123456789abcdef"

RA_STATEFUL = """\
Soliciting ff02::2 (ff02::2) on ens3...

Hop limit                 :           64 (      0x40)
Stateful address conf.    :          Yes
Stateful other conf.      :          Yes
Router lifetime           :         1800 (0x00000708) seconds
"""
RA_SLAAC = RA_STATEFUL.replace("Yes", "No")
RA_STATELESS = RA_STATEFUL.replace(
    "address conf.    :          Yes", "address conf.    :           No"
)


def fake_bin(tmp: Path, ra: str | None = None) -> Path:
    """ip (logs its arguments), ifquery (greps -i FILE for a stanza), rdisc6 if ra."""
    bin_ = tmp / "bin"
    bin_.mkdir(exist_ok=True)
    tools = {
        "ip": f'#!/bin/sh\necho "$*" >> {tmp}/ip.log\n',
        "ifquery": '#!/bin/sh\n[ "$1" = -i ] || exit 1\ngrep -q "^iface $3 " "$2" '
        '&& echo "address: dhcp"\nexit 0\n',
    }
    if ra is not None:
        (tmp / "ra.txt").write_text(ra)
        tools["rdisc6"] = f"#!/bin/sh\ncat {tmp}/ra.txt\n"
    for name, text in tools.items():
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    return bin_


def nic(sysfs: Path, name: str, assign: str = "0", carrier: str = "1", type_: str = "1") -> None:
    d = sysfs / name
    d.mkdir(parents=True)
    (d / "addr_assign_type").write_text(assign + "\n")
    (d / "carrier").write_text(carrier + "\n")
    (d / "type").write_text(type_ + "\n")


def fake_root(tmp: Path, style: str) -> Path:
    root = tmp / "root"
    conf = {
        "debian": "etc/network/interfaces.d",
        "redhat": "etc/sysconfig/network-scripts",
        "suse": "etc/sysconfig/network",
    }[style]
    (root / conf).mkdir(parents=True)
    (root / "etc/machine-id").write_text(MACHINE_ID + "\n")
    if style == "debian":
        (root / "etc/network/interfaces").write_text(
            "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n"
        )
    return root


def run_script(
    tmp: Path, *args: str, ra: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    bin_ = fake_bin(tmp, ra)
    full = {
        "PATH": f"{bin_}:/usr/bin:/bin",
        "DHCP_ALL_INTERFACES_ROOT": str(tmp / "root"),
        "DHCP_ALL_INTERFACES_SYSFS": str(tmp / "sys"),
        "DIB_DHCP_TIMEOUT": "2",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=full, capture_output=True, text=True, timeout=60
    )


def test_debian_ifupdown_file_per_interface(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "debian")
    nic(tmp_path / "sys", "ens3")
    r = run_script(tmp_path, "ens3")
    assert r.returncode == 0, r.stderr
    text = (root / "etc/network/interfaces.d/ens3").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == ["auto ens3", "iface ens3 inet dhcp"]
    assert "ens3: DHCP configured in /etc/network/interfaces.d/ens3 (IPv6: none)" in r.stdout
    assert "link set dev ens3 up" in (tmp_path / "ip.log").read_text()
    # a second run (the next boot) leaves the file alone
    (root / "etc/network/interfaces.d/ens3").write_text("iface ens3 inet static\n")
    r = run_script(tmp_path, "ens3")
    assert r.returncode == 0 and "already configured" in r.stdout
    assert (root / "etc/network/interfaces.d/ens3").read_text() == "iface ens3 inet static\n"


@pytest.mark.parametrize(
    ("ra", "stanza"),
    [
        (RA_STATEFUL, ["iface ens3 inet6 dhcp"]),
        (RA_STATELESS, ["iface ens3 inet6 auto", "    dhcp 1"]),
        (RA_SLAAC, ["iface ens3 inet6 auto", "    dhcp 0"]),
    ],
)
def test_debian_ipv6_from_the_router_advertisement(
    tmp_path: Path, ra: str, stanza: list[str]
) -> None:
    root = fake_root(tmp_path, "debian")
    nic(tmp_path / "sys", "ens3")
    r = run_script(tmp_path, "ens3", ra=ra)
    assert r.returncode == 0, r.stderr
    lines = (root / "etc/network/interfaces.d/ens3").read_text().splitlines()
    assert lines[-len(stanza) :] == stanza and "iface ens3 inet dhcp" in lines
    duid = (root / "var/lib/dhcp/dhclient6--ens3.lease").read_text()
    assert duid == 'default-duid "\\x00\\x04\\x01\\x23\\x45\\x67\\x89\\xab\\xcd\\xef' + (
        '\\x01\\x23\\x45\\x67\\x89\\xab\\xcd\\xef";\n'
    )


def test_debian_stanza_in_interfaces_counts_as_configured(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "debian")
    with (root / "etc/network/interfaces").open("a") as f:
        f.write("auto eth0\niface eth0 inet static\n")
    nic(tmp_path / "sys", "eth0")
    r = run_script(tmp_path, "eth0")
    assert r.returncode == 0, r.stderr
    assert "already configured" in r.stdout
    assert not (root / "etc/network/interfaces.d/eth0").exists()


def test_all_interfaces_skips_lo_virtual_and_linkless(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "debian")
    sys = tmp_path / "sys"
    nic(sys, "lo")
    nic(sys, "eno1")
    nic(sys, "eno1.42", assign="2")  # a VLAN on a real NIC: configured
    nic(sys, "br0", assign="3")  # generated MAC: left alone
    nic(sys, "eno2", carrier="0")  # no cable
    r = run_script(tmp_path, DIB_DHCP_TIMEOUT="1")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (root / "etc/network/interfaces.d").iterdir()) == [
        "eno1",
        "eno1.42",
    ]
    assert "br0: its MAC address is not permanent" in r.stdout
    assert "eno2: no link after 1 s" in r.stdout
    assert "lo" not in (tmp_path / "ip.log").read_text().split()


def test_redhat_ifcfg(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "redhat")
    sys = tmp_path / "sys"
    nic(sys, "eth0")
    nic(sys, "ib0", type_="32")
    nic(sys, "eth0.7", assign="2")
    r = run_script(tmp_path, ra=RA_SLAAC)
    assert r.returncode == 0, r.stderr
    scripts = root / "etc/sysconfig/network-scripts"

    def values(name: str) -> dict[str, str]:
        text = (scripts / f"ifcfg-{name}").read_text()
        pairs = [ln.split("=", 1) for ln in text.splitlines() if not ln.startswith("#")]
        return {k: v.strip('"') for k, v in pairs}

    eth = values("eth0")
    assert eth == {
        "DEVICE": "eth0",
        "BOOTPROTO": "dhcp",
        "ONBOOT": "yes",
        "TYPE": "Ethernet",
        "IPV6INIT": "yes",
        "IPV6_AUTOCONF": "yes",
    }
    ib = values("ib0")
    assert ib["TYPE"] == "InfiniBand" and ib["CONNECTED_MODE"] == "no"
    assert ib["IPV6INIT"] == "no" and ib["BOOTPROTO"] == "dhcp"
    vlan = values("eth0.7")
    assert vlan["VLAN"] == "yes" and "TYPE" not in vlan
    assert (root / "var/lib/dhclient/dhclient6--eth0.lease").is_file()


def test_redhat_stateful_dhcpv6(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "redhat")
    nic(tmp_path / "sys", "eth0")
    assert run_script(tmp_path, "eth0", ra=RA_STATEFUL).returncode == 0
    text = (root / "etc/sysconfig/network-scripts/ifcfg-eth0").read_text()
    assert 'IPV6_FORCE_ACCEPT_RA="yes"\nDHCPV6C="yes"\n' in text


def test_suse_ifcfg(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "suse")
    nic(tmp_path / "sys", "eth0")
    r = run_script(tmp_path, "eth0", ra=RA_STATEFUL)
    assert r.returncode == 0, r.stderr
    text = (root / "etc/sysconfig/network/ifcfg-eth0").read_text()
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        'BOOTPROTO="dhcp"',
        'STARTMODE="auto"',
    ]


def test_unknown_network_stack_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "root/etc").mkdir(parents=True)
    nic(tmp_path / "sys", "eth0")
    r = run_script(tmp_path, "eth0")
    assert r.returncode == 1
    assert "do not know how this system configures interfaces" in r.stderr


# -- the install hook ----------------------------------------------------------------------


def run_hook(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_ = tmp / "hookbin"
    bin_.mkdir(exist_ok=True)
    for tool in ("update-rc.d", "chkconfig", "rc-update", "dnf", "dib-init-system"):
        (bin_ / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp}/calls.log\n')
        (bin_ / tool).chmod(0o755)
    full = {
        "PATH": f"{bin_}:/usr/bin:/bin",
        "DHCP_ALL_INTERFACES_ROOT": str(tmp / "root"),
        "DIB_INIT_SYSTEM": "systemd",
        "DISTRO_NAME": "debian",
        **env,
    }
    return subprocess.run(["bash", str(HOOK)], env=full, capture_output=True, text=True)


def calls(tmp: Path) -> str:
    log = tmp / "calls.log"
    return log.read_text() if log.exists() else ""


def test_hook_systemd_installs_script_unit_and_udev_rule(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/dhcp").mkdir(parents=True)
    (root / "etc/dhcp/dhclient.conf").write_text("timeout 300;\nretry 60;\n")
    r = run_hook(tmp_path, DIB_DHCP_TIMEOUT="45")
    assert r.returncode == 0, r.stderr
    script = root / "usr/local/sbin/dhcp-all-interfaces.sh"
    assert os.access(script, os.X_OK)
    assert "\ndefault_timeout=45\n" in script.read_text()
    unit = (root / "usr/lib/systemd/system/dhcp-interface@.service").read_text()
    assert "ExecStartPre=/usr/local/sbin/dhcp-all-interfaces.sh %i" in unit
    assert "ExecStart=/sbin/ifup %i" in unit and "TimeoutStartSec=90s" in unit
    rule = (root / "etc/udev/rules.d/99-dhcp-all-interfaces.rules").read_text()
    assert 'ENV{SYSTEMD_WANTS}+="dhcp-interface@$name.service"' in rule
    assert 'KERNEL!="lo"' in rule
    dhclient = (root / "etc/dhcp/dhclient.conf").read_text().splitlines()
    assert "timeout 45;" in dhclient and "timeout 300;" not in dhclient
    assert not [ln for ln in dhclient if ln.startswith("retry")]
    assert not (root / "etc/NetworkManager").exists()


def test_hook_sysv_and_upstart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run_hook(tmp_path, DIB_INIT_SYSTEM="sysv").returncode == 0
    assert os.access(root / "etc/init.d/dhcp-all-interfaces", os.X_OK)
    assert "update-rc.d dhcp-all-interfaces defaults" in calls(tmp_path)
    assert not (root / "usr/lib/systemd/system/dhcp-interface@.service").exists()
    assert run_hook(tmp_path, DIB_INIT_SYSTEM="upstart").returncode == 0
    job = (root / "etc/init/dhcp-all-interfaces.conf").read_text()
    assert "exec /usr/local/sbin/dhcp-all-interfaces.sh $INTERFACE" in job


def test_hook_gentoo_uses_dhcpcd(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/dhcpcd.conf").write_text(
        "slaac private\noption domain_name, domain_search, host_name\n"
    )
    r = run_hook(tmp_path, DIB_INIT_SYSTEM="openrc", DISTRO_NAME="gentoo")
    assert r.returncode == 0, r.stderr
    assert not (root / "usr/local/sbin/dhcp-all-interfaces.sh").exists()
    assert "rc-update add dhcpcd default" in calls(tmp_path)
    conf = (root / "etc/dhcpcd.conf").read_text()
    assert "#slaac private" in conf and "option domain_search\n" in conf


def nm_conf(root: Path) -> dict[str, str]:
    text = (root / "etc/NetworkManager/conf.d/00-main.conf").read_text()
    pairs = [ln.split("=", 1) for ln in text.splitlines() if "=" in ln and ln[0] != "#"]
    return dict(pairs)


def test_hook_network_manager_settings_and_script(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/NetworkManager").mkdir(parents=True)
    r = run_hook(tmp_path, DIB_DHCP_TIMEOUT="60")
    assert r.returncode == 0, r.stderr
    conf = nm_conf(root)
    assert conf["dhcp"] == "internal" and conf["ignore-carrier"] == "*"
    assert conf["ipv4.dhcp-timeout"] == "60" and conf["ipv6.dhcp-timeout"] == "60"
    assert conf["autoconnect-retries"] == "-1"
    # without DIB_DHCP_NETWORK_MANAGER_AUTO the per-interface service is there too
    assert (root / "usr/lib/systemd/system/dhcp-interface@.service").is_file()


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_hook_network_manager_auto_leaves_interfaces_to_it(tmp_path: Path, value: str) -> None:
    root = tmp_path / "root"
    (root / "etc/NetworkManager").mkdir(parents=True)
    r = run_hook(tmp_path, DIB_DHCP_NETWORK_MANAGER_AUTO=value, DIB_DHCP_CLIENT="dhcpcd")
    assert r.returncode == 0, r.stderr
    assert nm_conf(root)["dhcp"] == "dhcpcd"
    assert not (root / "usr/local/sbin/dhcp-all-interfaces.sh").exists()
    assert not (root / "usr/lib/systemd/system/dhcp-interface@.service").exists()
    assert not (root / "etc/udev/rules.d/99-dhcp-all-interfaces.rules").exists()


def test_hook_network_manager_auto_needs_network_manager(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run_hook(tmp_path, DIB_DHCP_NETWORK_MANAGER_AUTO="true").returncode == 0
    assert (root / "usr/lib/systemd/system/dhcp-interface@.service").is_file()


@pytest.mark.parametrize(
    ("release", "client"), [("8", "dhclient"), ("9", "internal"), ("10", "dhcpcd")]
)
def test_hook_red_hat_default_dhcp_client(tmp_path: Path, release: str, client: str) -> None:
    root = tmp_path / "root"
    (root / "etc/NetworkManager").mkdir(parents=True)
    (root / "etc/redhat-release").write_text("CentOS Stream\n")
    r = run_hook(tmp_path, DISTRO_NAME="centos", DIB_RELEASE=release)
    assert r.returncode == 0, r.stderr
    assert nm_conf(root)["dhcp"] == client
    assert "dnf -y install ndisc6" in calls(tmp_path)
    # DIB_DHCP_CLIENT wins
    r = run_hook(tmp_path, DISTRO_NAME="centos", DIB_RELEASE=release, DIB_DHCP_CLIENT="dhclient")
    assert r.returncode == 0 and nm_conf(root)["dhcp"] == "dhclient"


def test_hook_rejects_a_bad_timeout(tmp_path: Path) -> None:
    r = run_hook(tmp_path, DIB_DHCP_TIMEOUT="soon")
    assert r.returncode == 1 and "DIB_DHCP_TIMEOUT=soon" in r.stderr
