"""Failures half-way through create leave nothing behind: a failing mkfs, bad mkfs
options, SIGTERM to a running create (then cleanup), SIGKILL (then cleanup)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from dibpy.blockdev import BlockDevice, BlockDeviceParams, load_config
from dibpy.errors import CommandError
from tests.conftest import process_alive

from .helpers import REPO, Cli

EFI = REPO / "elements" / "block-device-efi" / "block-device-default.yaml"
MBR = REPO / "elements" / "block-device-mbr" / "block-device-default.yaml"


def fake_mkfs(tmp_path: Path, body: str) -> dict[str, str]:
    """A PATH whose mkfs.ext4 is the given shell script body."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "mkfs.ext4"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}


def test_failing_mkfs_leaves_nothing(tmp_path: Path, no_leaks: None) -> None:
    env = fake_mkfs(tmp_path, 'echo "mkfs.ext4: disk on fire" >&2; exit 1')
    cli = Cli(tmp_path, EFI, "1GiB", env=env)
    cli.run("init")
    r = cli.run("create", check=False)
    assert r.returncode != 0
    assert "mkfs.ext4" in r.stderr and "disk on fire" in r.stderr
    assert "Traceback" not in r.stderr
    # the ESP was made before root failed: its loop/partitions were undone too
    kinds = {e["kind"] for e in cli.state()["resources"]}
    assert {"loop", "partx"} <= kinds
    assert cli.live() == []
    assert not cli.image.exists()
    cli.run("cleanup")


def test_bad_mkfs_options_leave_nothing(tmp_path: Path, no_leaks: None) -> None:
    cli = Cli(tmp_path, MBR, "128MiB", **{"root-fs-opts": "--no-such-option"})
    cli.run("init")
    r = cli.run("create", check=False)
    assert r.returncode != 0
    assert "mkfs.ext4" in r.stderr and "--no-such-option" in r.stderr
    assert cli.live() == []
    cli.run("cleanup")


def _start_slow_create(tmp_path: Path) -> tuple[Cli, subprocess.Popen[str], Path]:
    marker = tmp_path / "mkfs-running"
    env = fake_mkfs(tmp_path, f'echo $$ > "{marker}"\nexec sleep 600')
    cli = Cli(tmp_path, EFI, "1GiB", env=env)
    cli.run("init")
    proc = subprocess.Popen(
        cli.argv("create"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text().strip():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow mkfs never started"
        time.sleep(0.1)
    # by now the loop device, the partitions and the ESP's mkfs exist
    assert any(e["kind"] == "partx" for e in cli.live())
    return cli, proc, marker


def test_sigterm_during_create_then_cleanup(tmp_path: Path, no_leaks: None) -> None:
    cli, proc, marker = _start_slow_create(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "interrupted" in err
    # the sleeping mkfs was killed with its process group
    assert not process_alive(int(marker.read_text()))
    cli.run("cleanup")
    assert cli.live() == []


def test_sigkill_during_create_then_cleanup(tmp_path: Path, no_leaks: None) -> None:
    cli, proc, marker = _start_slow_create(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    # nothing could unwind: the journal says what is left
    assert any(e["kind"] == "loop" for e in cli.live())
    # the orphaned mkfs still holds the partition open; a real operator kills it too
    os.kill(int(marker.read_text()), signal.SIGKILL)
    cli.run("cleanup")
    assert not (cli.build / "states" / "block-device").exists()


def _params(tmp_path: Path, **kw: object) -> BlockDeviceParams:
    return BlockDeviceParams(
        image_dir=tmp_path / "img",
        mount_base=tmp_path / "mnt",
        build_dir=tmp_path / "build",
        image_size=1024**3,
        **kw,
    )  # type: ignore[arg-type]


def test_in_process_failure_unwinds_earlier_nodes(tmp_path: Path, no_leaks: None) -> None:
    params = _params(tmp_path, root_fs_opts=("--no-such-option",))
    cfg = load_config(EFI.read_text(), params, origin=str(EFI))
    bd = BlockDevice(cfg, params)
    with pytest.raises(CommandError, match="mkfs.ext4"), ExitStack() as stack:
        bd.create(stack)
    assert bd.journal.live() == []
    assert not bd.image_path.exists()


def test_in_process_umount_then_stack_is_a_no_op(tmp_path: Path, no_leaks: None) -> None:
    params = _params(tmp_path)
    cfg = load_config(EFI.read_text(), params, origin=str(EFI))
    bd = BlockDevice(cfg, params)
    with ExitStack() as stack:
        bd.create(stack)
        assert bd.root_mount == params.mount_base
        (bd.root_mount / "etc").mkdir()
        bd.write_fstab(bd.root_mount / "etc")
        (bd.root_mount / "boot" / "efi" / "f").write_text("esp\n")
        bd.umount()
        assert bd.journal.live() == []
    assert bd.image_path.exists()
    r = subprocess.run(["sfdisk", "--json", str(bd.image_path)], capture_output=True, check=True)
    assert b"ESP" in r.stdout
    bd.delete()
    assert not bd.image_path.exists()


def test_in_process_error_after_create_releases_everything(tmp_path: Path, no_leaks: None) -> None:
    params = _params(tmp_path)
    cfg = load_config(MBR.read_text(), params, origin=str(MBR))
    bd = BlockDevice(cfg, params)
    with pytest.raises(RuntimeError, match="build step failed"), ExitStack() as stack:
        bd.create(stack)
        raise RuntimeError("build step failed")
    assert bd.journal.live() == []
    assert bd.image_path.exists()  # made completely: only delete() removes it
