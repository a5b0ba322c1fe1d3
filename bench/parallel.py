#!/usr/bin/env python3
"""Many images at once: four different `debian-minimal vm` images built one after another
with disk-image-create, then all four with `diskimage-builder -j 2` from one YAML file.

Both share one image cache (bootstrap and package caches), warmed by a first build that
is not counted; reusing an installed tree is turned off (DIB_TREE_CACHE_MAX_AGE=0), so
every image runs its install phases.  Prints the wall time of each way and their ratio
(goal: -j 2 on a 2-core host in at most 0.65x of sequential).

Usage: bench/parallel.py [--out DIR] [--jobs N]
Run as root, from a checkout, with dibpy's venv active.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BASE = ["debian-minimal", "vm"]
#: four images that differ in what they install and configure
IMAGES = {
    "plain": [],
    "devuser": ["devuser"],
    "growroot": ["growroot"],
    "serial": ["enable-serial-console", "openssh-server"],
}
ENV = {"DIB_RELEASE": "bookworm", "DIB_TREE_CACHE_MAX_AGE": "0", "DIB_DEV_USER_PASSWORD": "x"}


def run(argv: list[str], env: dict[str, str], log: Path) -> float:
    start = time.monotonic()
    with open(log, "w") as f:
        r = subprocess.run(argv, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed (exit {r.returncode}); log: {log}")
    return time.monotonic() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="work directory (default: a temporary one)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="dibpy-bench-parallel-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DIB_IMAGE_CACHE=str(work / "cache"), **ENV)
    dic = str(REPO / "bin" / "disk-image-create")

    warm = run([sys.executable, dic, "-o", str(work / "warm"), *BASE], env, work / "warm.log")
    print(f"warm-up build (not counted): {warm:.1f} s")

    seq_dir = work / "sequential"
    seq_dir.mkdir(exist_ok=True)
    sequential = 0.0
    for name, extra in IMAGES.items():
        secs = run(
            [sys.executable, dic, "-o", str(seq_dir / name), *BASE, *extra],
            env,
            seq_dir / f"{name}.log",
        )
        print(f"  sequential {name:10s} {secs:6.1f} s")
        sequential += secs

    par_dir = work / "parallel"
    par_dir.mkdir(exist_ok=True)
    spec = [{"imagename": str(par_dir / n), "elements": BASE + e} for n, e in IMAGES.items()]
    (par_dir / "images.yaml").write_text(yaml.safe_dump(spec))
    parallel = run(
        [
            sys.executable,
            str(REPO / "bin" / "diskimage-builder"),
            "-j",
            str(args.jobs),
            str(par_dir / "images.yaml"),
        ],
        env,
        par_dir / "build.log",
    )
    print(f"sequential (4 images):       {sequential:6.1f} s")
    print(f"diskimage-builder -j {args.jobs}:       {parallel:6.1f} s")
    print(f"ratio:                       {parallel / sequential:6.2f}x   (goal <= 0.65x)")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
