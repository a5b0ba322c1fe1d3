"""growvols's command, run for real against a stand-in disk: lsblk, sgdisk, blockdev and
LVM's report commands are stand-ins on PATH answering for a fixture disk (this host has
no device-mapper, so no real volume group), and every command that would change the disk
is recorded.  The element's first-boot service is checked in its post-install.d hook."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, write

ELEMENT = REPO / "elements" / "growvols"
GROWVOLS = ELEMENT / "static/usr/local/sbin/growvols"
MiB, GiB = 1 << 20, 1 << 30
EXTENT = 4 * MiB
FIRST, LAST = 10485760, 41943006  # free sectors after the image's 5 GiB
FREE = (LAST - FIRST + 1) * 512


def lsblk(thin: bool = False) -> dict[str, object]:
    def lv(name: str, fstype: str, label: str, mnt: str) -> dict[str, object]:
        return {"name": f"vg-{name}", "kname": "dm-1", "pkname": "vda3", "type": "lvm",
                "fstype": fstype, "label": label, "mountpoint": mnt, "size": GiB}  # fmt: skip

    lvs = [lv("lv_root", "xfs", "img-rootfs", "/"), lv("lv_var", "xfs", "fs_var", "/var"),
           lv("lv_home", "ext4", "fs_home", "/home"), lv("lv_swap", "swap", "", "")]  # fmt: skip
    return {"blockdevices": [{
        "name": "vda", "kname": "vda", "pkname": None, "type": "disk", "fstype": None,
        "label": None, "mountpoint": None, "size": 20 * GiB, "children": [
            {"name": "vda1", "kname": "vda1", "pkname": "vda", "type": "part",
             "fstype": "vfat", "label": "MKFS_ESP", "mountpoint": "/boot/efi", "size": 1},
            {"name": "vda2", "kname": "vda2", "pkname": "vda", "type": "part",
             "fstype": None, "label": None, "mountpoint": None, "size": 1},
            {"name": "vda3", "kname": "vda3", "pkname": "vda", "type": "part",
             "fstype": "LVM2_member", "label": None, "mountpoint": None, "size": 4 * GiB,
             "children": lvs},
        ]}]}  # fmt: skip


TABLE = """Disk /dev/vda: 41943040 sectors, 20.0 GiB
Number  Start (sector)    End (sector)  Size       Code  Name
   1            2048          411647   200.0 MiB   EF00  ESP
   2          411648          413695   1024.0 KiB  EF02  BSP
   3          413696        10485726   4.8 GiB     8E00  root
"""


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """A directory of stand-in commands; answers.json says what each prints."""
    bindir = tmp_path / "bin"
    answers = {
        "lsblk": json.dumps(lsblk()),
        "vgs --noheadings --options vg_name": "  vg\n",
        "vgs --noheadings --units b --nosuffix --options vg_extent_size vg": f"  {EXTENT}\n",
        "pvs --noheadings --options pv_name,vg_name": "  /dev/vda3 vg\n",
        "lvs --noheadings --options lv_name,lv_attr vg": "  lv_root -wi-ao----\n",
        "sgdisk --first-aligned-in-largest --end-of-largest /dev/vda": f"{FIRST}\n{LAST}\n",
        "sgdisk --print /dev/vda": TABLE,
        "blockdev --getss /dev/vda": "512\n",
    }
    write(tmp_path / "answers.json", json.dumps(answers))
    stub = (
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "name = os.path.basename(sys.argv[0]); key = ' '.join([name, *sys.argv[1:]])\n"
        f"with open({str(tmp_path / 'calls')!r}, 'a') as f: f.write(key + '\\n')\n"
        f"answers = json.load(open({str(tmp_path / 'answers.json')!r}))\n"
        "sys.stdout.write(answers.get(key, answers.get(name, '')))\n"
    )
    for name in ("lsblk", "vgs", "pvs", "lvs", "sgdisk", "blockdev", "partprobe", "pvcreate",
                 "vgextend", "lvextend", "xfs_growfs", "resize2fs", "multipath"):  # fmt: skip
        write(bindir / name, stub, 0o755)
    return tmp_path


def growvols(disk: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": f"{disk / 'bin'}:{os.environ['PATH']}", **env}
    return subprocess.run(["python3", str(GROWVOLS), *args], env=full, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)  # fmt: skip


def changes(disk: Path) -> list[str]:
    """The commands that would change the disk, in order."""
    calls = (disk / "calls").read_text().splitlines()
    report = ("lsblk", "vgs", "pvs", "lvs", "blockdev", "sgdisk --first", "sgdisk --print")
    return [c for c in calls if not c.startswith(report)]


def test_grows_volumes_in_order_and_gives_the_rest_to_root(disk: Path) -> None:
    r = growvols(disk, "--yes", "/var=50%", "fs_home=2GiB")
    assert r.returncode == 0, r.stderr
    usable = FREE - 2 * EXTENT
    usable -= usable % EXTENT
    var = usable * 50 // 100
    var -= var % EXTENT
    home = 2 * GiB
    root = usable - var - home
    assert changes(disk) == [
        "sgdisk --move-second-header /dev/vda",
        f"sgdisk --new=4:{FIRST}:{LAST} --typecode=4:8E00 --change-name=4:growvols /dev/vda",
        "partprobe /dev/vda",
        "pvcreate --yes /dev/vda4",
        "vgextend vg /dev/vda4",
        f"lvextend --size +{var}B /dev/mapper/vg-lv_var /dev/vda4",
        f"lvextend --size +{home}B /dev/mapper/vg-lv_home /dev/vda4",
        f"lvextend --size +{root}B /dev/mapper/vg-lv_root /dev/vda4",
        "xfs_growfs /var",
        "resize2fs /dev/mapper/vg-lv_home",
        "xfs_growfs /",
    ]
    assert all(n % EXTENT == 0 for n in (var, home, root))


def test_noop_prints_and_changes_nothing(disk: Path) -> None:
    r = growvols(disk, "--noop")
    assert r.returncode == 0, r.stderr
    assert "would run:" in r.stdout and "lvextend" in r.stdout
    assert changes(disk) == ["sgdisk --move-second-header /dev/vda"]


def test_defaults_from_the_service_environment(disk: Path) -> None:
    r = growvols(disk, "--yes", GROWVOLS_ARGS="fs_var=1GiB", GROWVOLS_GROUP="vg",
                 GROWVOLS_DEVICE="vda")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"lvextend --size +{GiB}B /dev/mapper/vg-lv_var /dev/vda4" in changes(disk)


def test_overallocation_warns_and_later_volumes_get_what_is_left(disk: Path) -> None:
    r = growvols(disk, "--yes", "/var=90%", "/home=5GiB", "fs_var=1GiB")
    assert r.returncode == 0, r.stderr
    assert "warning: /home=5GiB asks for 5GiB, only 1GiB is left" in r.stdout
    grown = [c.split()[3] for c in changes(disk) if c.startswith("lvextend")]
    # fs_var (the same volume as /var) and / find nothing left
    assert grown == ["/dev/mapper/vg-lv_var", "/dev/mapper/vg-lv_home"]


def test_thin_pool_grows_first(disk: Path) -> None:
    answers = json.loads((disk / "answers.json").read_text())
    answers["lvs --noheadings --options lv_name,lv_attr vg"] = (
        "  lv_thinpool twi-aotz--\n  lv_root Vwi-aotz--\n"
    )
    (disk / "answers.json").write_text(json.dumps(answers))
    r = growvols(disk, "--yes")
    assert r.returncode == 0, r.stderr
    grown = [c for c in changes(disk) if c.startswith("lvextend")]
    assert grown[0] == f"lvextend --poolmetadatasize +{GiB}B vg/lv_thinpool"
    assert grown[1].startswith("lvextend --size +") and grown[1].endswith(
        "vg/lv_thinpool /dev/vda4"
    )
    # thin volumes take space from the pool, not from the new physical volume
    assert grown[2].startswith("lvextend --size +") and grown[2].endswith("/dev/mapper/vg-lv_root")


def test_no_free_space(disk: Path) -> None:
    answers = json.loads((disk / "answers.json").read_text())
    answers["sgdisk --first-aligned-in-largest --end-of-largest /dev/vda"] = "41943000\n41943006\n"
    (disk / "answers.json").write_text(json.dumps(answers))
    r = growvols(disk, "--yes")
    assert r.returncode == 0 and "nothing to grow into" in r.stdout
    assert growvols(disk, "--yes", "--exit-on-no-grow").returncode == 2
    assert changes(disk) == ["sgdisk --move-second-header /dev/vda"] * 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["/var"], ["'/var'", "VOLUME=AMOUNT"]),
        (["/var=12parsecs"], ["VOLUME=AMOUNT"]),
        (["/srv=1GiB"], ["no LVM logical volume", "/srv"]),
        (["--group", "other"], ["no LVM volume group 'other'"]),
        (["--device", "sdz"], ["no block device 'sdz'"]),
    ],
)
def test_bad_arguments_are_one_line(disk: Path, args: list[str], words: list[str]) -> None:
    r = growvols(disk, "--yes", *args)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and all(w in r.stderr for w in words), r.stderr
    assert not [c for c in changes(disk) if not c.startswith("sgdisk --move")]


def test_swap_is_not_grown(disk: Path) -> None:
    answers = json.loads((disk / "answers.json").read_text())
    data = lsblk()
    lv = data["blockdevices"][0]["children"][2]["children"][3]  # type: ignore[index]
    lv["label"] = "swap"
    answers["lsblk"] = json.dumps(data)
    (disk / "answers.json").write_text(json.dumps(answers))
    r = growvols(disk, "--yes", "swap=1GiB")
    assert r.returncode == 1 and "holds swap" in r.stderr


# ---------------------------------------------------------------- the element's hook

HOOK = ELEMENT / "post-install.d/80-growvols"


def run_hook(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The hook with / mapped onto tmp_path: its /etc writes and systemctl are redirected."""
    bindir = tmp_path / "bin"
    write(bindir / "systemctl", f'#!/bin/bash\necho "$*" >> {tmp_path}/systemctl.calls\n', 0o755)
    script = HOOK.read_text().replace("/etc/default/growvols", f"{tmp_path}/etc/default/growvols")
    (tmp_path / "etc/default").mkdir(parents=True, exist_ok=True)
    return subprocess.run(["bash", "-c", script], env={"PATH": f"{bindir}:/usr/bin:/bin", **env},
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_systemd_trigger_enables_the_service(tmp_path: Path) -> None:
    r = run_hook(tmp_path, DIB_GROWVOLS_TRIGGER="systemd", DIB_GROWVOLS_ARGS="/var=80%",
                 DIB_GROWVOLS_GROUP="vg", DIB_INIT_SYSTEM="systemd")  # fmt: skip
    assert r.returncode == 0, r.stderr
    conf = (tmp_path / "etc/default/growvols").read_text()
    assert 'GROWVOLS_ARGS="/var=80%"\nGROWVOLS_GROUP="vg"\nGROWVOLS_DEVICE=""\n' in conf
    assert (tmp_path / "systemctl.calls").read_text() == "enable growvols.service\n"
    unit = (ELEMENT / "init-scripts/systemd/growvols.service").read_text()
    assert "EnvironmentFile=-/etc/default/growvols" in unit
    assert "ExecStart=/usr/local/sbin/growvols --verbose --yes" in unit


def test_manual_trigger_enables_nothing(tmp_path: Path) -> None:
    r = run_hook(tmp_path)
    assert r.returncode == 0 and not (tmp_path / "systemctl.calls").exists()
    assert not (tmp_path / "etc/default/growvols").exists()


@pytest.mark.parametrize(
    ("env", "word"),
    [({"DIB_GROWVOLS_TRIGGER": "cron"}, "DIB_GROWVOLS_TRIGGER=cron"),
     ({"DIB_GROWVOLS_TRIGGER": "systemd", "DIB_INIT_SYSTEM": "openrc"}, "openrc")],
)  # fmt: skip
def test_bad_trigger_is_one_line(tmp_path: Path, env: dict[str, str], word: str) -> None:
    r = run_hook(tmp_path, **env)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and word in r.stderr
