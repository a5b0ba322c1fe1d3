"""ibft-interfaces: systemd-networkd files from a (fake) iBFT in sysfs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "elements/ibft-interfaces/static/usr/local/sbin/dib-ibft-interfaces"


def nic(sysfs: Path, name: str, **values: str) -> None:
    d = sysfs / name
    d.mkdir(parents=True)
    for k, v in values.items():
        (d / k.replace("_", "-")).write_text(v + "\n")


def run(sysfs: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IBFT_SYSFS": str(sysfs), "IBFT_NETWORK_DIR": str(out)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)


def test_static_and_dhcp_nics(tmp_path: Path) -> None:
    sysfs = tmp_path / "ibft"
    static_nic = {"mac": "52:54:00:12:34:56", "ip_addr": "192.0.2.10", "prefix_len": "24"}
    static_nic |= {"gateway": "192.0.2.1", "primary_dns": "192.0.2.53"}
    static_nic |= {"secondary_dns": "0.0.0.0", "origin": "1"}
    nic(sysfs, "ethernet0", **static_nic)
    nic(sysfs, "ethernet1", mac="52:54:00:ab:cd:ef", ip_addr="0.0.0.0", origin="3")
    (sysfs / "target0").mkdir()
    out = tmp_path / "network"
    r = run(sysfs, out)
    assert r.returncode == 0, r.stderr
    static = (out / "05-ibft-ethernet0.network").read_text().splitlines()
    assert "MACAddress=52:54:00:12:34:56" in static
    assert "Address=192.0.2.10/24" in static
    assert "Gateway=192.0.2.1" in static
    assert "DNS=192.0.2.53" in static and "DNS=0.0.0.0" not in static
    dhcp = (out / "05-ibft-ethernet1.network").read_text().splitlines()
    assert "DHCP=yes" in dhcp and not any(x.startswith("Address=") for x in dhcp)
    assert sorted(p.name for p in out.iterdir()) == [
        "05-ibft-ethernet0.network",
        "05-ibft-ethernet1.network",
    ]


def test_no_ibft_is_not_an_error(tmp_path: Path) -> None:
    r = run(tmp_path / "none", tmp_path / "network")
    assert r.returncode == 0
    assert "no iBFT network interface" in r.stdout
    assert not (tmp_path / "network").exists()
