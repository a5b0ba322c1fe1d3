#!/usr/bin/env python3
"""The tree cache's checkpoints, timed: `debian-minimal vm` (qcow2) plus one test element
with an install.d and a post-install.d hook, built

1. cold with --no-cache (no tree cache, no bootstrap cache),
2. cold with the cache on (an empty DIB_IMAGE_CACHE: every checkpoint written),
3. again, nothing changed (the tree after post-root.d restored),
4. after editing the element's post-install.d hook (the tree after install.d restored),
5. after editing its install.d hook (the tree after pre-install.d restored),

and prints each time, the ratios the issue sets goals for (cold cache-on / --no-cache
<= 1.05, post-install.d edit / cold <= 0.35, install.d edit / cold <= 0.6), and the
per-stage times of the checkpoints. One run: these hosts are shared, compare ratios.

Usage: bench/checkpoints.py [--out DIR]   (root, from a checkout, dibpy's venv active)
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
ELEMENTS = ["debian-minimal", "vm", "bench-ckpt"]
HOOK = '#!/bin/bash\nset -eu\necho "{phase} {tag}" >> /var/log/bench-ckpt\n'


def make_element(root: Path) -> Path:
    el = root / "elements" / "bench-ckpt"
    for phase in ("install.d", "post-install.d"):
        (el / phase).mkdir(parents=True, exist_ok=True)
        edit(el, phase, "v1")
    (el / "README.rst").write_text(
        "bench-ckpt\n==========\nA hook in install.d and post-install.d.\n"
    )
    return el


def edit(el: Path, phase: str, tag: str) -> None:
    hook = el / phase / "50-bench-ckpt"
    hook.write_text(HOOK.format(phase=phase, tag=tag))
    hook.chmod(0o755)


def build(work: Path, name: str, cache: Path, elements: Path, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        DIB_IMAGE_CACHE=str(cache),
        DIB_RELEASE="bookworm",
        ELEMENTS_PATH=str(elements),
        TMP_DIR=str(work / "tmp"),
    )
    (work / "tmp").mkdir(exist_ok=True)
    cmd = [sys.executable, str(REPO / "bin" / "disk-image-create"), "-o", str(work / name)]
    start = time.monotonic()
    with open(work / f"{name}.log", "w") as log:
        r = subprocess.run([*cmd, *args, *ELEMENTS], env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if r.returncode != 0:
        raise SystemExit(f"{name} failed (exit {r.returncode}); log: {work / name}.log")
    record = json.loads((work / f"{name}.d" / "dibpy-build.json").read_text())
    record["seconds"] = seconds
    return dict(record)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="keep the builds and logs here")
    p.add_argument("--rounds", type=int, default=1, help="cold pairs (alternating order)")
    args = p.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="dibpy-bench-ckpt."))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    el = make_element(work)
    elements = el.parent
    runs: dict[str, dict[str, object]] = {}
    pairs: list[tuple[float, float]] = []
    for n in range(args.rounds):
        # alternating which goes first: the host's load drifts
        order = ["no-cache", "cold"] if n % 2 == 0 else ["cold", "no-cache"]
        got = {}
        for what in order:
            if what == "cold":
                shutil.rmtree(cache, ignore_errors=True)
                got[what] = build(work, f"cold{n}", cache, elements)
            else:
                shutil.rmtree(work / "nocache-cache", ignore_errors=True)
                got[what] = build(
                    work, f"nocache{n}", work / "nocache-cache", elements, "--no-cache"
                )
        pairs.append((float(got["no-cache"]["seconds"]), float(got["cold"]["seconds"])))  # type: ignore[arg-type]
        runs.update(got)
    runs["no change"] = build(work, "nochange", cache, elements)
    edit(el, "post-install.d", "v2")
    runs["post-install.d edit"] = build(work, "postinst", cache, elements)
    edit(el, "install.d", "v2")
    runs["install.d edit"] = build(work, "inst", cache, elements)

    # the edits are measured against the mean cold cache-on build
    cold = sum(b for _, b in pairs) / len(pairs)
    print(f"{'build (last of each)':22} {'seconds':>8} {'/ cold':>7}  restored after")
    for name, rec in runs.items():
        secs = float(rec["seconds"])  # type: ignore[arg-type]
        tc = rec.get("tree_cache") or {}
        after = tc.get("restored_after") if isinstance(tc, dict) else None
        print(f"{name:22} {secs:8.1f} {secs / cold:7.2f}  {after or '-'}")
    post = float(runs["post-install.d edit"]["seconds"])  # type: ignore[arg-type]
    inst = float(runs["install.d edit"]["seconds"])  # type: ignore[arg-type]
    print()
    for n, (a, b) in enumerate(pairs):
        print(f"round {n}: --no-cache {a:.1f} s, cold cache-on {b:.1f} s: {b / a:5.3f}")
    total = sum(b for _, b in pairs) / sum(a for a, _ in pairs)
    print(f"cold cache-on / --no-cache   {total:5.3f}   goal <= 1.05 (all rounds)")
    print(f"post-install.d edit / cold   {post / cold:5.3f}   goal <= 0.35")
    print(f"install.d edit / cold        {inst / cold:5.3f}   goal <= 0.6")
    print()
    for name in ("no-cache", "cold"):
        stages = runs[name]["stages"]
        assert isinstance(stages, list)
        shown = [
            f"{s['name']} {s['seconds']:.2f} s"
            for s in stages
            if str(s["name"]).startswith(("checkpoint", "copy tree", "root.d", "tree cache"))
        ]
        print(f"{name}: " + ", ".join(shown))
        # what the build waited for the tree cache (the compression in the background
        # shares the cores, which this does not count)
        waited = sum(
            float(s["seconds"])
            for s in stages
            if str(s["name"]).startswith(("checkpoint", "tree cache save", "tree cache key"))
        )
        print(f"  waited for the tree cache: {waited:.2f} s")
    print(f"\nlogs and images in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
