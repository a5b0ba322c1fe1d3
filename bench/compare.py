#!/usr/bin/env python3
"""dibpy against diskimage-builder on the same machine: `debian-minimal vm`, qcow2.

For each tool, alternating runs: a cold build (empty caches), a warm rebuild (nothing
changed), the qcow2's size, the boot to the login prompt (QEMU, KVM or TCG as the host
allows), the peak memory of the build; for dibpy also the per-stage breakdown.  Prints
ratios (dibpy / diskimage-builder), since these machines are noisy.

diskimage-builder is installed from the package index into its own venv (bench/.dib-venv).
It needs kpartx, dmsetup and a vfat-capable kernel; where those are missing it cannot run,
and the script says so and reports dibpy alone.

Usage: bench/compare.py [--rounds N] [--out DIR] [--no-boot] [--dibpy-only]
Run as root, from a checkout, with dibpy's venv active.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ELEMENTS = ["debian-minimal", "vm"]


@dataclass
class Run:
    seconds: float
    peak_mib: float
    image: Path
    stages: list[dict[str, object]] = field(default_factory=list)


def timed(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, of the largest process) of one command."""
    start = time.monotonic()
    with open(log, "w") as f:
        r = subprocess.run(
            ["/usr/bin/time", "-v", *argv], env=env, stdout=f, stderr=subprocess.STDOUT
        )
    seconds = time.monotonic() - start
    text = log.read_text(errors="replace")
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed (exit {r.returncode}); log: {log}\n{text[-1500:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return seconds, (int(m.group(1)) / 1024 if m else float("nan"))


def dibpy_build(work: Path, name: str, cache: Path) -> Run:
    env = dict(os.environ, DIB_IMAGE_CACHE=str(cache))
    out = work / name
    cmd = [sys.executable, str(REPO / "bin" / "disk-image-create"), "-o", str(out), *ELEMENTS]
    secs, peak = timed(cmd, env, work / f"{name}.log")
    record = json.loads((work / f"{name}.d" / "dibpy-build.json").read_text())
    return Run(secs, peak, out.with_suffix(".qcow2"), record["stages"])


def dib_venv(work: Path) -> Path | None:
    venv = REPO / "bench" / ".dib-venv"
    if not (venv / "bin" / "disk-image-create").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "diskimage-builder"])
        if r.returncode != 0:
            return None
    return venv


def dib_missing() -> list[str]:
    missing = [t for t in ("kpartx", "dmsetup") if shutil.which(t) is None]
    if not Path("/dev/mapper/control").exists():
        missing.append("device-mapper (/dev/mapper/control)")
    return missing


def dib_build(venv: Path, work: Path, name: str, cache: Path) -> Run:
    env = dict(os.environ, DIB_IMAGE_CACHE=str(cache), PATH=f"{venv}/bin:{os.environ['PATH']}")
    out = work / name
    cmd = [str(venv / "bin" / "disk-image-create"), "-o", str(out), *ELEMENTS]
    secs, peak = timed(cmd, env, work / f"{name}.log")
    return Run(secs, peak, out.with_suffix(".qcow2"))


def boot(image: Path) -> float:
    from dibpy.boottest import BootTest

    return BootTest(image=image, timeout=900).run().seconds_to_prompt


def report(tool: str, cold: Run, warm: Run, boot_s: float | None) -> dict[str, float]:
    size = warm.image.stat().st_size / 2**20
    print(
        f"{tool}: cold {cold.seconds:.1f} s, warm {warm.seconds:.1f} s, qcow2 {size:.1f} MiB, "
        f"peak memory {max(cold.peak_mib, warm.peak_mib):.0f} MiB"
        + (f", boot to login {boot_s:.1f} s" if boot_s is not None else "")
    )
    for title, r in (("cold", cold), ("warm", warm)):
        if r.stages:
            print(f"  {tool} {title} stages:")
            for s in r.stages:
                sec = float(s["seconds"])  # type: ignore[arg-type]
                print(f"    {s['name']:<20} {sec:7.1f} s  {100 * sec / r.seconds:5.1f} %")
    return {"cold": cold.seconds, "warm": warm.seconds, "size": size, "boot": boot_s or 0.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", type=Path)
    p.add_argument("--no-boot", action="store_true")
    p.add_argument("--dibpy-only", action="store_true")
    args = p.parse_args()
    work = args.out or Path("/var/tmp/dibpy-bench")
    work.mkdir(parents=True, exist_ok=True)
    venv = None
    if not args.dibpy_only:
        missing = dib_missing()
        if missing:
            print(
                f"diskimage-builder cannot run on this host (missing: {', '.join(missing)}); "
                "reporting dibpy alone"
            )
        else:
            venv = dib_venv(work)
            if venv is None:
                print("diskimage-builder could not be installed; reporting dibpy alone")
    results: dict[str, list[dict[str, float]]] = {"dibpy": [], "diskimage-builder": []}
    for rnd in range(args.rounds):
        # alternate which tool goes first, so drift on a noisy machine hits both
        tools = ["dibpy", "diskimage-builder"] if rnd % 2 == 0 else ["diskimage-builder", "dibpy"]
        for tool in tools:
            if tool == "diskimage-builder" and venv is None:
                continue
            cache = work / f"cache-{tool}-{rnd}"
            shutil.rmtree(cache, ignore_errors=True)
            if tool == "dibpy":
                cold = dibpy_build(work, f"dibpy-cold-{rnd}", cache)
                warm = dibpy_build(work, f"dibpy-warm-{rnd}", cache)
            else:
                assert venv is not None
                cold = dib_build(venv, work, f"dib-cold-{rnd}", cache)
                warm = dib_build(venv, work, f"dib-warm-{rnd}", cache)
            b = None if args.no_boot else boot(warm.image)
            results[tool].append(report(tool, cold, warm, b))
    if results["diskimage-builder"]:

        def mean(tool: str, k: str) -> float:
            return sum(r[k] for r in results[tool]) / len(results[tool])

        print("dibpy / diskimage-builder:")
        for k in ("cold", "warm", "size", "boot"):
            if mean("diskimage-builder", k):
                print(f"  {k:<5} {mean('dibpy', k) / mean('diskimage-builder', k):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
