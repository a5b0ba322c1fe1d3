"""What diskimage-builder gives a hook, on the fast fixture OS: the phases it runs in an
image-less build, block-device.d, the variables and functions it exports, mounts a hook
leaves behind, checksums, old-image names and the MB unit of --image-extra-size.

Each test writes a small element in diskimage-builder's style (it calls ``die`` without
sourcing it, mounts into the tree and leaves the mount to the builder) and checks what
it recorded, what the outputs are and that nothing is left mounted.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import chroot_works, our_mounts, write
from tests.integration.test_pipeline import DIC, FIXTURES, _env


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


def _run(
    tmp_path: Path, elements_dir: Path, out: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    e = _env(tmp_path, ELEMENTS_PATH=f"{elements_dir}:{FIXTURES}", **env)
    return subprocess.run(
        [*DIC, "-n", "-o", str(out), *args],
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )


RECORD = 'echo "$(basename "$(dirname "$0")") {}" >> "{}"\n'


def _dib_style_element(root: Path, record: Path) -> Path:
    """An element written the way diskimage-builder's own are."""
    el = root / "dib-style"
    write(el / "README.rst", "dib-style\n=========\nhooks written for diskimage-builder\n")
    cache = root / "shared-cache"
    (cache / "marker-from-cache").parent.mkdir(parents=True)
    (cache / "marker-from-cache").write_text("cached\n")
    # like diskimage-builder's dpkg/root.d/50-shared-apt-cache: a bind mount (through
    # sudo) it never undoes
    write(
        el / "root.d" / "60-shared-cache",
        "#!/bin/bash\nset -eu -o pipefail\n"
        'mkdir -p "$TARGET_ROOT/var/cache/shared"\n'
        f'sudo mount --bind {cache} "$TARGET_ROOT/var/cache/shared"\n'
        + RECORD.format("mounted", record),
        mode=0o755,
    )
    # die comes exported, as diskimage-builder's does
    write(
        el / "post-root.d" / "10-uses-die",
        "#!/bin/bash\nset -eu -o pipefail\n"
        '[ -n "${DIB_FORCE_DIE:-}" ] && die "dib-style was told to die"\n'
        'echo "lockfiles=$DIB_LOCKFILES $( [ -d "$DIB_LOCKFILES" ] && echo dir)" >> '
        f'"{record}"\n'
        'echo "cache-mounted=$(ls "$TARGET_ROOT/var/cache/shared")" >> ' + f'"{record}"\n',
        mode=0o755,
    )
    write(
        el / "install.d" / "10-home",
        '#!/bin/bash\nset -eu -o pipefail\necho "home=$HOME" > /var/log/dib-style-home\n',
        mode=0o755,
    )
    write(
        el / "block-device.d" / "10-record",
        "#!/bin/bash\nset -eu -o pipefail\n"
        + RECORD.format("ran", record)
        + f'grep -E "^(image-size|root-fs-type):" "$DIB_BLOCK_DEVICE_PARAMS_YAML" >> "{record}"\n',
        mode=0o755,
    )
    for phase in ("pre-finalise.d", "finalise.d"):
        write(
            el / phase / "10-record",
            "#!/bin/bash\nset -eu -o pipefail\n"
            'echo "finalised" > "${TARGET_ROOT:-}/var/log/dib-style-' + phase + '" || '
            'echo "finalised" > "/var/log/dib-style-' + phase + '"\n',
            mode=0o755,
        )
    # the tree is at $TMP_BUILD_DIR/mnt in every phase (the agent ramdisk builder's
    # TLS and podman elements write their settings there in pre-finalise.d)
    write(
        el / "pre-finalise.d" / "20-tmp-build-dir-mnt",
        '#!/bin/bash\nset -eu -o pipefail\necho mnt > "$TMP_BUILD_DIR/mnt/var/log/dib-style-mnt"\n',
        mode=0o755,
    )
    write(
        el / "cleanup.d" / "10-record",
        "#!/bin/bash\nset -eu -o pipefail\n"
        f'ls "$TARGET_ROOT/var/log" > "{record}.logs"\n'
        f'cat "$TARGET_ROOT/var/log/dib-style-home" > "{record}.home"\n'
        f'ls -A "$TARGET_ROOT/var/cache/shared" > "{record}.cache-in-image"\n',
        mode=0o755,
    )
    return el


def _no_mounts_under(p: Path) -> None:
    assert not [m for m in our_mounts() if m.startswith(str(p))], "a mount outlived the build"


def test_image_less_build_runs_the_finalise_phases_and_unmounts_a_hooks_mount(
    tmp_path: Path, no_leaks: None
) -> None:
    record = tmp_path / "record"
    _dib_style_element(tmp_path / "els", record)
    r = _run(
        tmp_path,
        tmp_path / "els",
        tmp_path / "out" / "img",
        "tiny-os",
        "dib-style",
        "no-final-image",
        DIB_LOCKFILES=str(tmp_path / "locks"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    logs = (Path(f"{record}.logs")).read_text().split()
    # diskimage-builder runs pre-finalise.d and finalise.d without a final image too
    assert "dib-style-pre-finalise.d" in logs and "dib-style-finalise.d" in logs
    assert "dib-style-mnt" in logs
    text = record.read_text()
    assert f"lockfiles={tmp_path / 'locks'} dir" in text
    # the hook's bind mount was there through post-root.d, then undone before cleanup.d
    assert "cache-mounted=marker-from-cache" in text
    assert Path(f"{record}.cache-in-image").read_text().strip() == ""
    assert Path(f"{record}.home").read_text().strip() == "home=/root"
    assert "block-device.d ran" not in text, "block-device.d ran without a block device"
    _no_mounts_under(tmp_path)


def test_die_is_exported_and_a_failed_build_still_unmounts_the_hooks_mount(
    tmp_path: Path, no_leaks: None
) -> None:
    record = tmp_path / "record"
    _dib_style_element(tmp_path / "els", record)
    r = _run(
        tmp_path,
        tmp_path / "els",
        tmp_path / "img",
        "tiny-os",
        "dib-style",
        "no-final-image",
        DIB_FORCE_DIE="1",
    )
    assert r.returncode != 0
    assert "ERROR: dib-style was told to die" in r.stderr
    assert "command not found" not in r.stderr
    assert "post-root.d/10-uses-die" in r.stderr and "Traceback" not in r.stderr
    _no_mounts_under(tmp_path)


def _kib(size: str) -> int:
    m = re.fullmatch(r"(\d+)KiB", size)
    assert m, size
    return int(m.group(1))


def test_image_build_block_device_d_checksums_extra_size_and_old_images(
    tmp_path: Path, no_leaks: None
) -> None:
    record = tmp_path / "record"
    _dib_style_element(tmp_path / "els", record)
    out = tmp_path / "out" / "img"
    args = ("-t", "raw", "tiny-os", "dib-style", "block-device-mbr")
    r = _run(tmp_path, tmp_path / "els", out, *args, "--image-extra-size", "100", DIB_CHECKSUM="1")
    assert r.returncode == 0, r.stderr[-3000:]
    raw = out.with_name("img.raw")
    text = record.read_text()
    assert "block-device.d ran" in text
    assert "dib-style-mnt" in Path(f"{record}.logs").read_text().split()
    size_line = next(ln for ln in text.splitlines() if ln.startswith("image-size:"))
    image_kib = _kib(size_line.split()[1])
    assert image_kib * 1024 == raw.stat().st_size
    # MB as in diskimage-builder: the tree + 100 MiB (+ 64 MiB journal, table room),
    # not +100 GiB, and not the tree / 0.6 it would be without the option
    assert 164 * 1024 <= image_kib <= 400 * 1024, image_kib
    assert "root-fs-type: ext4" in text
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    for algo in ("md5", "sha256"):
        line = Path(f"{raw}.{algo}").read_text().split()
        assert line[1] == str(raw)
    assert Path(f"{raw}.sha256").read_text().split()[0] == digest
    # the ext4 root as diskimage-builder makes it: an inode per 4 KiB, a 64 MiB journal
    info = subprocess.run(
        ["sfdisk", "--json", str(raw)], capture_output=True, text=True, check=True
    ).stdout
    start = json.loads(info)["partitiontable"]["partitions"][0]["start"] * 512
    loop = subprocess.run(
        ["losetup", "--show", "-f", "-r", "-o", str(start), str(raw)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        sb = subprocess.run(
            ["dumpe2fs", "-h", loop], capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in sb.splitlines())
    )
    blocks, inodes = int(fields["Block count"]), int(fields["Inode count"])
    bsize = int(fields["Block size"])
    assert abs(blocks * bsize / inodes - 4096) < 512, (blocks, bsize, inodes)
    assert fields["Total journal size"] == "64M", fields["Total journal size"]

    # again, with only sha256: the old image and its sums are kept under
    # diskimage-builder's NAME-YYYY.MM.DD-HH.MM.SS.EXT name
    r = _run(tmp_path, tmp_path / "els", out, *args, DIB_CHECKSUM="sha256")
    assert r.returncode == 0, r.stderr[-3000:]
    assert Path(f"{raw}.sha256").is_file() and not Path(f"{raw}.md5").exists()
    old = [p.name for p in raw.parent.glob("img-*.raw")]
    assert len(old) == 1 and re.fullmatch(r"img-\d{4}\.\d\d\.\d\d-\d\d\.\d\d\.\d\d\.raw", old[0])
    assert (raw.parent / f"{old[0]}.md5").is_file() and (raw.parent / f"{old[0]}.sha256").is_file()
    _no_mounts_under(tmp_path)


def test_a_block_device_d_hook_making_its_own_device_is_refused(
    tmp_path: Path, no_leaks: None
) -> None:
    el = tmp_path / "els" / "legacy-bd"
    write(el / "README.rst", "legacy-bd\n=========\nold style\n")
    write(
        el / "block-device.d" / "10-own",
        "#!/bin/bash\necho IMAGE_BLOCK_DEVICE=/dev/loop99\n",
        mode=0o755,
    )
    r = _run(
        tmp_path,
        tmp_path / "els",
        tmp_path / "img",
        "-t",
        "raw",
        "tiny-os",
        "legacy-bd",
        "block-device-mbr",
    )
    assert r.returncode != 0
    assert "block-device.d hook made its own block device" in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("img*.raw"))


def test_quiet_no_timestamp_and_image_usage_report(tmp_path: Path, no_leaks: None) -> None:
    big = tmp_path / "els" / "big-file"
    write(big / "README.rst", "big-file\n========\na 12 MiB file\n")
    write(
        big / "post-root.d" / "10-big",
        '#!/bin/bash\nhead -c 12582912 /dev/zero > "$TARGET_ROOT/big-file"\n',
        mode=0o755,
    )
    args = ("-t", "raw", "tiny-os", "big-file", "block-device-mbr")
    r = _run(
        tmp_path,
        tmp_path / "els",
        tmp_path / "a",
        *args,
        DIB_SHOW_IMAGE_USAGE="1",
        DIB_NO_TIMESTAMP="1",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = r.stderr[r.stderr.index("image size report") :]
    assert "12.0 MiB  /big-file" in report
    assert not re.search(r"^\d\d:\d\d:\d\d ", r.stderr, re.M), "DIB_NO_TIMESTAMP kept the time"
    # a quiet console shows no progress lines, only what goes wrong
    r = _run(tmp_path, tmp_path / "els", tmp_path / "b", *args, DIB_QUIET="1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "root.d" not in r.stderr and "image size report" not in r.stderr


def test_any_qemu_img_format_and_the_squash_name(tmp_path: Path, no_leaks: None) -> None:
    """diskimage-builder converts any other -t with qemu-img and names squashfs NAME.squash."""
    (tmp_path / "els").mkdir()
    out = tmp_path / "out" / "img"
    r = _run(
        tmp_path, tmp_path / "els", out, "-t", "vdi,qed,squashfs", "tiny-os", "block-device-mbr"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for fmt in ("vdi", "qed"):
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", str(out.with_name(f"img.{fmt}"))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(info)["format"] == fmt
    assert out.with_name("img.squash").is_file()
    r = _run(tmp_path, tmp_path / "els", out, "-t", "nbd", "tiny-os")
    assert r.returncode != 0 and "-t nbd: unknown output type" in r.stderr
