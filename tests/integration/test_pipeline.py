"""The build pipeline on a tiny chroot-able OS (the host's bash and coreutils): fast, no network.

Checks what hooks see in each phase, what the chroot looks like while they run, that the
build's scaffolding (resolv.conf, policy-rc.d, CA bundle, hook mount) is gone afterwards,
and that a failing or interrupted build leaves no mount, process or output behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dibpy.mounts import processes_using
from tests.conftest import REPO, chroot_works, our_mounts

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=str(FIXTURES),
        TMP_DIR=str(tmp_path / "tmp"),
        PROBE_OUT=str(tmp_path / "probe"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
    )
    env.update(extra)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return env


def dic(
    tmp_path: Path, out: Path, *args: str, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """disk-image-create -n -o OUT ARGS... with the fixture elements, captured."""
    return subprocess.run(
        [*DIC, "-n", "-o", str(out), *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _read(p: Path) -> dict[str, str]:
    out = {}
    for line in p.read_text().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def _build_dirs(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "tmp"))


def test_hooks_see_dib_environment_and_a_prepared_chroot(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "out" / "img"
    r = dic(tmp_path, out, "tiny-os", "probe", "no-final-image", "-p", "foo,bar", "-p", "baz")
    assert r.returncode == 0, r.stderr
    probe = tmp_path / "probe"
    for phase in ("pre-install.d", "install.d"):
        seen = _read(probe / f"probe-{phase}")
        assert seen["phase"] == phase
        assert seen["env_d"] == "yes", "environment.d was not sourced"
        assert seen["image_name"] == str(out)
        assert seen["elements"].split() == ["no-final-image", "probe", "tiny-os"]
        assert seen["proc"] == "yes"
        assert seen["policy"] == "yes", "services could start during the build"
        assert seen["hooks_ro"] == "yes", "the hook tree is writable from the chroot"
        host_resolv = Path("/etc/resolv.conf").read_text().splitlines()[0]
        assert seen["resolv"] == host_resolv, "the host's resolv.conf was not swapped in"
        if Path("/etc/ssl/certs/ca-certificates.crt").exists():
            assert seen["ca_readable"] == "yes", seen
    host = _read(probe / "probe-post-root.d")
    assert host["probe_path"] == str(FIXTURES / "probe"), "get_image_element_array is broken"
    # -p packages went through install-packages, after install.d
    assert (probe / "installed-packages").read_text().split() == ["foo", "bar", "baz"]
    # scaffolding gone from the finished tree
    assert (probe / "final-resolv.conf").read_text().strip() == "tiny-os image resolv"
    assert "policy-rc.d" not in (probe / "final-usr-sbin-listing").read_text()
    assert (probe / "final-tmp-listing").read_text().strip() == ""
    # the build directory is gone and a build record was written
    assert _build_dirs(tmp_path) == []
    assert (tmp_path / "out" / "img.d" / "dibpy-build.json").is_file()


def test_failing_hook_is_named_and_leaves_nothing(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "out" / "img"
    r = dic(tmp_path, out, "tiny-os", "failing", "no-final-image")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    err = r.stderr.splitlines()
    msg = next(line for line in err if "error:" in line)
    assert "install.d/60-fail-on-purpose" in msg and "element failing" in msg
    assert "exit status 42" in msg
    assert "about to fail on purpose" in r.stderr
    assert _build_dirs(tmp_path) == []
    # the background process the hook started in the chroot was stopped
    assert processes_using(tmp_path) == [], "a process started in the chroot outlived the build"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("img.*"))


def test_sigterm_mid_build_leaves_nothing(tmp_path: Path, no_leaks: None) -> None:
    slow = tmp_path / "slow-elements" / "slow" / "install.d"
    slow.mkdir(parents=True)
    (slow.parent / "README.rst").write_text("slow\n====\nsleeps in install.d\n")
    hook = slow / "50-slow"
    hook.write_text("#!/bin/bash\necho started-slow\nsleep 120\n")
    hook.chmod(0o755)
    env = _env(tmp_path, ELEMENTS_PATH=f"{slow.parent.parent}:{FIXTURES}")
    proc = subprocess.Popen(
        [*DIC, "-n", "-o", str(tmp_path / "img"), "tiny-os", "slow", "no-final-image"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "started-slow" in line:
            break
    assert "started-slow" in seen, seen
    mounted = [m for m in our_mounts() if m.startswith(str(tmp_path))]
    assert mounted, "expected the build's mounts while it runs"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in rest
    assert "interrupted" in rest.lower() or "signal" in rest.lower(), rest
    assert _build_dirs(tmp_path) == []
    assert processes_using(tmp_path) == [], "a process of the build outlived it"


def test_image_build_writes_checked_outputs(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "out" / "tiny"
    r = dic(tmp_path, out, "-t", "raw,qcow2", "--checksum", "tiny-os", "probe", "block-device-mbr")
    assert r.returncode == 0, r.stderr[-3000:]
    raw, qcow2 = out.with_name("tiny.raw"), out.with_name("tiny.qcow2")
    # one bootable partition, as block-device-mbr says
    import json

    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(raw)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["label"] == "dos"
    assert len(table["partitions"]) == 1 and table["partitions"][0].get("bootable")
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(qcow2)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == raw.stat().st_size
    # checksums match the files
    import hashlib

    for p in (raw, qcow2):
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        assert Path(f"{p}.sha256").read_text().split()[0] == digest
        assert Path(f"{p}.md5").is_file()
    # finalise.d ran in the chroot of the mounted image, with the loop device known
    seen = _read(tmp_path / "probe" / "probe-finalise.d")
    assert seen["block_device"].startswith("/dev/loop")
    assert seen["proc"] == "yes"
    # fstab and the root filesystem label, read from outside
    part = table["partitions"][0]
    blkid = subprocess.run(
        ["blkid", "-p", "-O", str(part["start"] * 512), "-o", "export", str(raw)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "LABEL=cloudimg-rootfs" in blkid and "TYPE=ext4" in blkid
    assert _build_dirs(tmp_path) == []
    assert not list(out.parent.glob(".*partial*"))


def test_failure_with_the_image_mounted_leaves_nothing(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "out" / "tiny"
    r = dic(tmp_path, out, "tiny-os", "block-device-mbr", "failing-finalise")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "finalise.d/60-fail-in-finalise" in r.stderr and "element failing-finalise" in r.stderr
    assert "failing in finalise with block device /dev/loop" in r.stderr
    assert _build_dirs(tmp_path) == []
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("tiny.*"))


ALL_TYPES = "raw,qcow2,vhd,vhdx,vmdk,ova,tar,tgz,squashfs,docker,vmmgr"


def test_one_build_writes_every_format(tmp_path: Path, no_leaks: None) -> None:
    import json

    out = tmp_path / "out" / "all"
    r = dic(tmp_path, out, "-t", ALL_TYPES, "tiny-os", "block-device-mbr", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    names = {p.name for p in out.parent.iterdir()}
    for ext in (
        "raw",
        "qcow2",
        "vhd",
        "vhdx",
        "vmdk",
        "ova",
        "tar",
        "tgz",
        "squash",
        "docker.tar",
        "vmmgr.tar.gz",
    ):
        assert f"all.{ext}" in names, (ext, sorted(names))
    # every disk format shows the same disk from outside
    dibpy = [sys.executable, str(REPO / "bin" / "dibpy")]
    seen = {}
    for ext in ("raw", "qcow2", "vhd", "vhdx", "vmdk"):
        info = json.loads(
            subprocess.run(
                [*dibpy, "info", "--json", str(out.with_name(f"all.{ext}"))],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        seen[ext] = json.dumps(info.get("partitions", info.get("partition_table")), sort_keys=True)
    assert len(set(seen.values())) == 1, seen
    # the tree formats hold the tree
    listing = subprocess.run(
        ["tar", "-tf", str(out.with_name("all.tar"))], capture_output=True, text=True, check=True
    ).stdout
    assert "usr/bin/bash" in listing


def test_dns_survives_a_package_replacing_resolv_conf(tmp_path: Path, no_leaks: None) -> None:
    r = dic(tmp_path, tmp_path / "img", "tiny-os", "replaces-resolv", "no-final-image")
    assert r.returncode == 0, r.stderr[-3000:]
    probe = tmp_path / "probe"
    # the later hook still had the host's resolver
    assert (probe / "resolv-seen-after-replace").read_text() == Path("/etc/resolv.conf").read_text()
    # and the image keeps what the "package" put there
    assert (
        probe / "final-resolv-link"
    ).read_text().strip() == "../run/systemd/resolve/stub-resolv.conf"


def _bg_element(tmp_path: Path, seconds: int) -> Path:
    """An element whose root.d hook (on the host) leaves a job running in the background,
    detached as a cache writer would be, that writes $BG_MARK when it is done."""
    hook = tmp_path / "bg-elements" / "bg" / "root.d" / "50-bg"
    hook.parent.mkdir(parents=True)
    (hook.parent.parent / "README.rst").write_text("bg\n==\nleaves a background job\n")
    hook.write_text(
        "#!/bin/bash\nset -eu\ncd /\n"
        f'setsid -f bash -c "sleep {seconds}; echo done > $BG_MARK" </dev/null >/dev/null 2>&1\n'
        "echo started-bg\n"
    )
    hook.chmod(0o755)
    return hook.parent.parent.parent


def test_what_a_hook_leaves_running_is_waited_for(tmp_path: Path, no_leaks: None) -> None:
    els = _bg_element(tmp_path, 3)
    mark = tmp_path / "bg-done"
    env = _env(tmp_path, ELEMENTS_PATH=f"{els}:{FIXTURES}", BG_MARK=str(mark))
    r = subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "img"), "tiny-os", "bg", "no-final-image"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    # the build ended only once the job had: its work is done, and nothing is left
    assert mark.read_text() == "done\n"
    assert re.search(r"waiting up to \S+ s for what the hooks left running: .*sleep", r.stderr)
    assert "stopping what the hooks left running" not in r.stderr


def test_sigterm_stops_what_a_hook_left_running(tmp_path: Path, no_leaks: None) -> None:
    els = _bg_element(tmp_path, 600)
    slow = tmp_path / "bg-elements" / "bg" / "install.d" / "50-slow"
    slow.parent.mkdir()
    slow.write_text("#!/bin/bash\necho started-slow\nsleep 120\n")
    slow.chmod(0o755)
    mark = tmp_path / "bg-done"
    env = _env(tmp_path, ELEMENTS_PATH=f"{els}:{FIXTURES}", BG_MARK=str(mark))
    proc = subprocess.Popen(
        [*DIC, "-n", "-o", str(tmp_path / "img"), "tiny-os", "bg", "no-final-image"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = ""
    while "started-slow" not in seen:
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    # interrupted: not waited for, stopped at once
    assert re.search(r"stopping what the hooks left running: .*sleep \(\d+\)", rest), rest
    left = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True)
    assert left.stdout == "", "the hook's background job outlived the build"
    assert not mark.exists()
