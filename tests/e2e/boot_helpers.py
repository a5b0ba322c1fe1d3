"""Helpers for the e2e tests of bootable outputs (UEFI, baremetal, ramdisks).

Builds go through the real commands in bin/ (disk-image-create or
ramdisk-image-create) with the environment tests/e2e/conftest.py's ``build_env`` makes,
so the Debian bootstrap cache is shared with the other e2e tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dibpy.boottest import BootResult, BootTest
from tests.conftest import REPO
from tests.e2e.conftest import DEV_PASSWORD, DEV_USER, build_env

#: what every build here adds so that the boot test can log in and look around
DEVUSER_ENV = {
    "DIB_DEV_USER_USERNAME": DEV_USER,
    "DIB_DEV_USER_PASSWORD": DEV_PASSWORD,
    "DIB_DEV_USER_PWDLESS_SUDO": "yes",
}
LOGIN = (DEV_USER, DEV_PASSWORD)


@dataclass
class Outputs:
    """A finished build: ``base`` is the -o name; the files are found beside it."""

    base: Path
    log: str
    seconds: float

    def file(self, suffix: str) -> Path:
        return self.base.with_name(self.base.name + suffix)


def build(
    command: str, out: Path, elements: list[str], cache: Path, *args: str, **env: str
) -> Outputs:
    """Run bin/COMMAND -o OUT ARGS ELEMENTS; fail the test with the log's tail on error."""
    tmp = out.parent / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, str(REPO / "bin" / command), "-o", str(out), *args, *elements],
        env=build_env(cache, tmp, **{**DEVUSER_ENV, **env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=2400,
    )
    seconds = time.monotonic() - start
    assert r.returncode == 0, r.stdout[-6000:]
    return Outputs(out, r.stdout, seconds)


def boot_together(boots: dict[str, BootTest]) -> dict[str, BootResult | Exception]:
    """Run independent boot tests two at a time (TCG runs a guest on one core, and these
    hosts have two); each name gets its result or the exception its boot raised."""
    from concurrent.futures import ThreadPoolExecutor

    def one(test: BootTest) -> BootResult | Exception:
        try:
            return test.run()
        except Exception as e:  # noqa: BLE001 - handed to the test that asserts on it
            return e

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, boots.values()))
    return dict(zip(boots, results, strict=True))


def result_of(results: dict[str, BootResult | Exception], name: str) -> BootResult:
    res = results[name]
    if isinstance(res, Exception):
        raise res
    return res


#: the decompressor for each compressed-archive signature an initramfs may start with
_DECOMPRESSORS = {
    b"\x28\xb5\x2f\xfd": ["zstd", "-dcq"],
    b"\x1f\x8b": ["gzip", "-dc"],
    b"\xfd7zXZ\x00": ["xz", "-dc"],
    b"\x02\x21\x4c\x18": ["lz4", "-dc"],
}


def _skip_cpio(data: bytes, pos: int) -> int:
    """The offset after the newc cpio archive at ``pos`` (an uncompressed early archive,
    e.g. CPU microcode, ahead of the compressed main one)."""
    while True:
        if data[pos : pos + 6] != b"070701":
            raise AssertionError(f"no cpio header at {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        filesize, namesize = fields[6], fields[11]
        name = data[pos + 110 : pos + 110 + namesize - 1]
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + filesize + 3) & ~3
        if name == b"TRAILER!!!":
            return pos


def initramfs_files(initrd: Path) -> list[str]:
    """Every path in an initramfs, read from outside with cpio and the decompressors."""
    data = initrd.read_bytes()
    pos = 0
    while data[pos : pos + 6] == b"070701":
        pos = _skip_cpio(data, pos)
        while pos < len(data) and data[pos] == 0:
            pos += 1
    for magic, argv in _DECOMPRESSORS.items():
        if data[pos : pos + len(magic)] == magic:
            cpio = subprocess.run(argv, input=data[pos:], stdout=subprocess.PIPE, check=True)
            break
    else:
        raise AssertionError(f"{initrd}: no compressed archive at offset {pos}")
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=cpio.stdout, stdout=subprocess.PIPE, check=True
    )
    return listing.stdout.decode().splitlines()


def initramfs_modules(initrd: Path) -> set[str]:
    """The kernel modules in an initramfs, by name (``-`` spelt ``_``, as modprobe does)."""
    return {
        Path(f).name.split(".ko")[0].replace("-", "_")
        for f in initramfs_files(initrd)
        if ".ko" in Path(f).name
    }
