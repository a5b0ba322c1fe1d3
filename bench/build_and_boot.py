#!/usr/bin/env python3
"""Time a cold build, a warm rebuild (bootstrap cache hit) and the boot of debian-minimal vm.

Prints the figures (and dibpy's per-stage breakdown of each build) and the image size.
Usage: bench/build_and_boot.py [--out DIR] [--elements "debian-minimal vm"] [--no-boot]
Run as root on a Debian host, from a checkout with dibpy's venv active.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(out: Path, elements: list[str], cache: Path) -> tuple[float, list[dict[str, object]]]:
    env = dict(os.environ, DIB_IMAGE_CACHE=str(cache))
    start = time.monotonic()
    subprocess.run(
        [sys.executable, str(REPO / "bin" / "disk-image-create"), "-o", str(out), *elements],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - start
    record = json.loads((out.with_name(out.name + ".d") / "dibpy-build.json").read_text())
    return seconds, record["stages"]


def print_stages(title: str, seconds: float, stages: list[dict[str, object]]) -> None:
    print(f"{title}: {seconds:.1f} s")
    for s in stages:
        sec = float(s["seconds"])  # type: ignore[arg-type]
        print(f"    {s['name']:<16} {sec:7.1f} s  {100 * sec / seconds:5.1f} %")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--elements", default="debian-minimal vm")
    p.add_argument("--no-boot", action="store_true")
    args = p.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="dibpy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    elements = args.elements.split()

    cold, cold_stages = build(work / "cold", elements, cache)
    warm, warm_stages = build(work / "warm", elements, cache)
    image = work / "warm.qcow2"
    print(f"dibpy bench: {' '.join(elements)} on {os.cpu_count()} cores")
    print_stages("cold build", cold, cold_stages)
    print_stages("warm rebuild", warm, warm_stages)
    print(f"warm/cold ratio: {warm / cold:.2f}")
    print(f"qcow2 size: {image.stat().st_size / 2**20:.1f} MiB")
    if not args.no_boot:
        from dibpy.boottest import BootTest

        res = BootTest(image=image, timeout=900).run()
        print(f"boot to login prompt: {res.seconds_to_prompt:.1f} s ({res.accel})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
