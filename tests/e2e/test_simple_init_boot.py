"""Build debian-minimal vm devuser simple-init, boot it with an OpenStack config drive
and check, logged in, what glean made of it: the hostname, the NIC's address and route
(and the ifupdown file glean wrote for it), the DNS server and root's SSH key.

The config drive is made here, on the host, as nova makes one: an ISO 9660 filesystem
labelled ``config-2`` (xorriso; the host needs no iso9660 driver, the guest kernel reads
it) holding ``openstack/latest/meta_data.json`` and ``network_data.json``.  It is
attached read-only as a second virtio disk (``BootTest(extra_drives=...)``).

The NIC is described by its MAC (:data:`dibpy.boottest.NIC_MAC`) with a *static*
10.0.2.15/24, QEMU user networking's guest address, gateway 10.0.2.2 and DNS 10.0.2.3.
Static rather than ``ipv4_dhcp``: for an ``ipv4_dhcp`` network glean writes the very
file (``auto IF`` / ``iface IF inet dhcp``) it writes for a NIC the config drive does not
describe, so the test could not tell whether glean matched the MAC at all; an
``address 10.0.2.15`` line can only have come from network_data.json.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.boot_helpers import DEVUSER_ENV, LOGIN
from tests.e2e.conftest import Built, run_build

HOSTNAME = "glean-test"


def _public_key() -> str:
    """A well-formed ed25519 public key line (glean copies it, nothing checks it)."""
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(range(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} e2e@dibpy-config-drive"


PUBLIC_KEY = _public_key()


def make_config_drive(where: Path, mac: str) -> Path:
    """An ISO 9660 config drive labelled config-2, made with xorriso (Rock Ridge, so the
    guest sees the lower-case long names glean opens)."""
    if shutil.which("xorriso") is None:
        pytest.skip("xorriso is not installed: no config drive can be made")
    latest = where / "config" / "openstack" / "latest"
    latest.mkdir(parents=True)
    meta = {
        "uuid": "7c5b9d6e-1f3a-4b8e-9d2c-6a0e5f4b3c21",
        "name": HOSTNAME,
        "hostname": HOSTNAME,
        "public_keys": {"e2e": PUBLIC_KEY},
    }
    network = {
        "links": [{"id": "tap-e2e", "type": "phy", "ethernet_mac_address": mac, "mtu": 1500}],
        "networks": [
            {
                "id": "network0",
                "link": "tap-e2e",
                "type": "ipv4",
                "ip_address": "10.0.2.15",
                "netmask": "255.255.255.0",
                "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.2.2"}],
                "network_id": "0e7b3b1c-5d2a-4f6e-8c9b-1a2b3c4d5e6f",
            }
        ],
        "services": [{"type": "dns", "address": "10.0.2.3"}],
    }
    (latest / "meta_data.json").write_text(json.dumps(meta))
    (latest / "network_data.json").write_text(json.dumps(network))
    iso = where / "config-drive.iso"
    r = subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-r", "-J"]
        + ["-o", str(iso), str(where / "config")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return iso


@pytest.fixture(scope="module")
def glean_image(tmp_path_factory: pytest.TempPathFactory, image_cache: Path) -> Built:
    out = tmp_path_factory.mktemp("simple-init") / "glean"
    return run_build(
        out, ["debian-minimal", "vm", "devuser", "simple-init"], image_cache, **DEVUSER_ENV
    )


def sections(output: str) -> dict[str, str]:
    """The command's output cut at its ``== NAME`` lines."""
    parts: dict[str, str] = {}
    name = ""
    for line in output.splitlines():
        m = re.fullmatch(r"== (\S+)\s*", line)
        if m:
            name = m.group(1)
            parts[name] = ""
        else:
            parts[name] = parts.get(name, "") + line + "\n"
    return parts


# what the logged-in user looks at; the address may come after the login prompt
GUEST_COMMAND = (
    "echo '== hostname'; hostname; cat /etc/hostname;"
    " for i in $(seq 90); do ip -4 -o addr show scope global | grep -q 'inet 10.0.2.15/'"
    " && break; sleep 1; done;"
    " echo '== addr'; ip -4 -o addr show scope global;"
    " echo '== route'; ip -4 route show default;"
    ' for f in /etc/network/interfaces.d/*; do echo "== $f"; cat "$f"; done;'
    " echo '== resolv'; cat /etc/resolv.conf;"
    " echo '== keys'; sudo cat /root/.ssh/authorized_keys;"
    # (the image has no D-Bus, so an unprivileged systemctl cannot ask systemd; and no
    # procps, so no pgrep)
    " echo '== units'; sudo systemctl is-active glean-early.service;"
    " sudo systemctl list-units --no-legend --plain 'glean@*';"
    " echo '== dhclient'; grep -lx dhclient /proc/[0-9]*/comm || echo none"
)


def test_glean_configures_the_image_from_a_config_drive(glean_image: Built, tmp_path: Path) -> None:
    from dibpy.boottest import NIC_MAC, BootTest

    assert "simple-init: glean " in glean_image.log, glean_image.log[-3000:]
    drive = make_config_drive(tmp_path, NIC_MAC)
    res = BootTest(
        image=glean_image.image,
        extra_drives=[drive],
        login=LOGIN,
        command=GUEST_COMMAND,
        timeout=600,
        command_timeout=240,
        console_log=glean_image.image.with_suffix(".console.log"),
    ).run()
    print(f"login prompt after {res.seconds_to_prompt:.1f} s ({res.accel})")
    assert res.command_output is not None
    out = sections(res.command_output)
    every = res.command_output
    # glean-early.service set the hostname before the getty started
    assert out["hostname"].split() == [HOSTNAME, HOSTNAME], every
    assert re.search(rf"(?m)^{HOSTNAME} login:", res.console), res.console[-3000:]
    # the NIC, found by its MAC, configured as network_data.json says (ifupdown file)
    m = re.search(r"^\d+: (\S+)\s+inet 10\.0\.2\.15/24 ", out["addr"], re.M)
    assert m, every
    nic = m.group(1)
    assert f"default via 10.0.2.2 dev {nic}" in out["route"], every
    cfg = out.get(f"/etc/network/interfaces.d/{nic}.cfg")
    assert cfg is not None, every
    assert f"iface {nic} inet static" in cfg and "address 10.0.2.15" in cfg, every
    assert "netmask 255.255.255.0" in cfg and "gateway 10.0.2.2" in cfg, every
    # static: no DHCP client was started for it
    assert out["dhclient"].strip() == "none", every
    assert "nameserver 10.0.2.3" in out["resolv"], every
    # root's authorized_keys, with glean's comment line before the key
    keys = out["keys"].splitlines()
    assert PUBLIC_KEY in keys, every
    assert "# Injected key e2e by keypair extension" in keys, every
    assert out["units"].splitlines()[0] == "active", every
    assert f"glean@{nic}.service" in out["units"], every
