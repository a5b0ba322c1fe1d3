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
