"""Build debian-minimal vm openssh-server devuser dhcp-all-interfaces, boot it, log in,
check its DHCP address and that sshd serves the host keys made at first boot; check the
image's hygiene from outside."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import loops_under, mounts_under
from tests.e2e.boot_helpers import boot_together, initramfs_modules
from tests.e2e.conftest import DEV_PASSWORD, DEV_USER, DEVUSER_ELEMENTS, Built, run_build
from tests.integration.blockdev.helpers import partition_device, table


@contextlib.contextmanager
def mounted_root(image: Path, workdir: Path) -> Iterator[Path]:
    """Mount the image's root partition read-only from outside (no partition scanning)."""
    raw = workdir / "inspect.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    t = table(raw)
    part = max(t["partitions"], key=lambda p: p["size"])
    mnt = workdir / "mnt"
    mnt.mkdir()
    try:
        with partition_device(raw, part, t.get("sectorsize", 512)) as dev:
            subprocess.run(["mount", "-o", "ro", dev, str(mnt)], check=True)
            try:
                yield mnt
            finally:
                subprocess.run(["umount", str(mnt)], check=True)
    finally:
        raw.unlink()


def test_image_boots_to_login_and_devuser_can_log_in(devuser_image: Built) -> None:
    from dibpy.boottest import BootTest

    assert devuser_image.image.is_file()
    res = BootTest(
        image=devuser_image.image,
        login=(DEV_USER, DEV_PASSWORD),
        # dhcp-all-interfaces: QEMU's user-net DHCP server gives the NIC 10.0.2.15 (the
        # login prompt may come before the lease)
        command="id; cat /proc/cmdline; for i in $(seq 60); do"
        " ip -4 -o addr show scope global | grep -q inet && break; sleep 1; done;"
        " ip -4 -o addr show scope global; ls /etc/network/interfaces.d;"
        # host keys: made at this first boot by runtime-ssh-host-keys' unit alone (sysprep
        # adds none of its own then), before sshd, which answers with them
        " for i in $(seq 60); do sudo -n systemctl is-active -q ssh && break; sleep 1; done;"
        " sudo -n systemctl is-active dib-ssh-host-keys ssh | paste -sd' ' | sed 's/^/units: /';"
        " ls /etc/systemd/system/dibpy-ssh-host-keys.service 2>&1 | sed 's/^/sysprep-unit: /';"
        " sudo -n journalctl -b -o cat -u dib-ssh-host-keys | grep -c 'generating new host keys'"
        " | sed 's/^/keygen-runs: /';"
        " ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null | cut -d' ' -f2,3 | sed 's/^/served: /';"
        " sudo -n cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2 | sed 's/^/file: /'",
        timeout=600,
        console_log=devuser_image.image.with_suffix(".console.log"),
    ).run()
    assert res.command_output is not None
    assert f"({DEV_USER})" in res.command_output, res.command_output
    # the bootloader element's default kernel arguments, as diskimage-builder's
    assert "no_timer_check" in res.command_output, res.command_output
    assert "inet 10.0.2.15/24" in res.command_output, res.command_output
    out = res.command_output
    assert "units: active active" in out, out
    assert "sysprep-unit: ls: cannot access" in out, out
    assert "keygen-runs: 1" in out, out
    served = [ln.split(": ", 1)[1].strip() for ln in out.splitlines() if ln.startswith("served: ")]
    on_disk = [ln.split(": ", 1)[1].strip() for ln in out.splitlines() if ln.startswith("file: ")]
    assert served and served == on_disk, out
    print(f"login prompt after {res.seconds_to_prompt:.1f} s ({res.accel})")


def test_every_bootable_format_boots(devuser_image: Built) -> None:
    """raw, vhd, vhdx and vmdk each boot to a login prompt, each from another disk
    controller (SATA, NVMe, virtio, IDE: the vm element's smaller initramfs must have
    each driver); two at a time (see boot_together), each failure named."""
    from dibpy.boottest import BootTest

    formats = {"raw": "raw", "vhd": "vpc", "vhdx": "vhdx", "vmdk": "vmdk"}
    interfaces = {"raw": "sata", "vhd": "nvme", "vhdx": "virtio", "vmdk": "ide"}
    results = boot_together(
        {
            f"{ext} on {interfaces[ext]}": BootTest(
                image=devuser_image.image.with_suffix("." + ext),
                fmt=fmt,
                disk_interface=interfaces[ext],
                timeout=600,
                console_log=devuser_image.image.with_suffix(f".{ext}.console.log"),
            )
            for ext, fmt in formats.items()
        }
    )
    failures = []
    for ext, res in results.items():
        if isinstance(res, Exception):
            failures.append(f"{ext}: {res}")
        else:
            print(f"{ext}: login prompt after {res.seconds_to_prompt:.1f} s ({res.accel})")
    assert not failures, "\n".join(failures)


#: what a virtual machine's root disk, its filesystem and its console need
VM_DRIVERS = {
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_console",
    "nvme",
    "ahci",
    "ata_piix",
    "sd_mod",
    "vmw_pvscsi",
    "mptspi",
    "hv_storvsc",
    "xen_blkfront",
    "ext4",
}


def test_vm_initramfs_holds_the_vm_drivers_only(devuser_image: Built, tmp_path: Path) -> None:
    """The vm element's initramfs: every VM disk and console driver (or built into the
    kernel), but no bare-metal RAID/HBA drivers and no filesystem the image does not use."""
    with mounted_root(devuser_image.image, tmp_path) as root:
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        assert initrds, sorted(p.name for p in (root / "boot").iterdir())
        version = initrds[-1].name.removeprefix("initrd.img-")
        builtin = {
            Path(line).name.split(".ko")[0].replace("-", "_")
            for line in (root / "lib" / "modules" / version / "modules.builtin")
            .read_text()
            .splitlines()
        }
        modules = initramfs_modules(initrds[-1])
        assert (root / "etc" / "initramfs-tools" / "conf.d" / "dibpy-vm.conf").is_file()
    missing = sorted(VM_DRIVERS - modules - builtin)
    assert not missing, f"not in the initramfs: {missing}"
    assert not modules & {"megaraid_sas", "mpt3sas", "qla2xxx", "xfs", "btrfs"}, sorted(modules)


def test_qcow2_is_valid_and_compressed(devuser_image: Built) -> None:
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(devuser_image.image)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["actual-size"] < info["virtual-size"]
    subprocess.run(["qemu-img", "check", str(devuser_image.image)], check=True)


def test_image_hygiene(devuser_image: Built, tmp_path: Path) -> None:
    with mounted_root(devuser_image.image, tmp_path) as root:
        machine_id = root / "etc" / "machine-id"
        assert not machine_id.exists() or machine_id.read_text().strip() in ("", "uninitialized")
        assert (
            not list((root / "etc" / "ssh").glob("ssh_host_*"))
            if (root / "etc/ssh").exists()
            else True
        )
        resolv = root / "etc" / "resolv.conf"
        host_resolv = Path("/etc/resolv.conf").read_text()
        if resolv.is_file() and not resolv.is_symlink():
            assert resolv.read_text() != host_resolv, "the build host's resolv.conf was left in"
        lists = root / "var" / "lib" / "apt" / "lists"
        assert not [p for p in lists.glob("*") if p.is_file() and p.name != "lock"]
        assert not list((root / "var" / "cache" / "apt").glob("*.bin"))
        assert not list((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
        assert not list((root / "tmp").iterdir())
        assert not (root / "usr" / "sbin" / "policy-rc.d").exists()
        assert not (root / "tmp" / "in_target.d").exists()
        # (a symlink such as systemd's /var/log/README is not a log)
        big_logs = [
            p
            for p in (root / "var" / "log").rglob("*")
            if p.is_file() and not p.is_symlink() and p.stat().st_size
        ]
        assert not big_logs, f"logs left in the image: {big_logs[:5]}"
        # the devuser password is in no file of the image in clear text
        hits = subprocess.run(
            [
                "grep",
                "-rlF",
                DEV_PASSWORD,
                str(root / "etc"),
                str(root / "var"),
                str(root / "root"),
            ],
            capture_output=True,
            text=True,
        )
        assert hits.stdout == "", hits.stdout
        assert (root / "etc" / "dib-manifests").is_dir()
        # diskimage-builder's default menu: shown, 5 seconds
        grub_cfg = (root / "boot" / "grub" / "grub.cfg").read_text()
        assert "set timeout=5" in grub_cfg and "set timeout_style=menu" in grub_cfg
        fstab = (root / "etc" / "fstab").read_text()
        assert "LABEL=cloudimg-rootfs" in fstab or "UUID=" in fstab


def test_no_secret_in_build_log_or_manifests(devuser_image: Built) -> None:
    assert DEV_PASSWORD not in devuser_image.log
    manifests = devuser_image.image.with_name(devuser_image.image.stem + ".d")
    assert manifests.is_dir()
    for p in manifests.rglob("*"):
        if p.is_file():
            assert DEV_PASSWORD not in p.read_text(errors="replace"), p


def test_nothing_left_after_build(devuser_image: Built) -> None:
    work = devuser_image.image.parent
    assert not mounts_under(work)
    assert not loops_under(work)
    assert not list((devuser_image.image.parent / "tmp").iterdir())
    assert not list(devuser_image.image.parent.glob(".*partial*"))


def test_rebuild_reuses_the_bootstrap_cache(devuser_image: Built, tmp_path: Path) -> None:
    again = run_build(
        tmp_path / "again", ["debian-minimal", "vm"], devuser_image.cache, "-t", "raw"
    )
    assert "reusing cached bootstrap" in again.log.lower() or "cache hit" in again.log.lower(), (
        again.log[-3000:]
    )
    assert (tmp_path / "again.raw").is_file()


def test_unchanged_rebuild_reuses_the_tree(devuser_image: Built, tmp_path: Path) -> None:
    again = run_build(
        tmp_path / "warm",
        DEVUSER_ELEMENTS,
        devuser_image.cache,
        DIB_DEV_USER_USERNAME=DEV_USER,
        DIB_DEV_USER_PASSWORD=DEV_PASSWORD,
        DIB_DEV_USER_PWDLESS_SUDO="yes",
    )
    assert "tree cache: hit after post-root.d: reusing cached tree" in again.log, again.log[-3000:]
    record = json.loads((tmp_path / "warm.d" / "dibpy-build.json").read_text())
    assert record["tree_cache"]["reused"] is True
    subprocess.run(["qemu-img", "check", str(again.image)], check=True)
    assert DEV_PASSWORD not in again.log
    print(f"cold build {devuser_image.seconds:.0f} s, warm rebuild {again.seconds:.0f} s")
