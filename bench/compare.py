#!/usr/bin/env python3
"""dibpy against diskimage-builder on the same machine: `debian-minimal vm`, qcow2.

For each tool, alternating runs: a cold build (empty caches), a warm rebuild (nothing
changed), the qcow2's size, the boot to the login prompt (QEMU, KVM or TCG as the host
allows), the peak memory of the build; for dibpy also the per-stage breakdown.  Prints
ratios (dibpy / diskimage-builder), since these machines are noisy.

diskimage-builder is installed from the package index into its own venv (bench/.dib-venv).
It needs sudo, kpartx and dmsetup (device-mapper); on hosts without them (containers,
these build machines) it runs with the stand-ins in bench/dib-standins/, which map the
kernel's partx partitions under the /dev/mapper names kpartx would give. Both tools build
bookworm from the archive the host's own apt sources name. If diskimage-builder cannot be
installed, the script says so and reports dibpy alone.

Then, in the same run, dibpy's own goals that need no diskimage-builder build:
bench/checkpoints.py (the cache-on cold build against --no-cache, and the rebuilds after
editing one post-install.d or install.d hook) and bench/parallel.py (four images with
`diskimage-builder -j 2` against one after another); a last table lists every goal.

Usage: bench/compare.py [--rounds N] [--out DIR] [--no-boot] [--dibpy-only]
                        [--no-checkpoints] [--no-parallel]
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

from tests.dibref import dib_mirror_env  # noqa: E402

ELEMENTS = ["debian-minimal", "vm"]
# the same release for both (diskimage-builder's default is "stable")
COMMON_ENV = {"DIB_RELEASE": "bookworm"}


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


def dibpy_build(work: Path, name: str, cache: Path, what: str) -> Run:
    env = dict(os.environ, DIB_IMAGE_CACHE=str(cache), **COMMON_ENV)
    out = work / name
    cmd = [sys.executable, str(REPO / "bin" / "disk-image-create"), "-o", str(out), *ELEMENTS]
    secs, peak = timed(cmd, env, work / f"{name}-{what}.log")
    record = json.loads((work / f"{name}.d" / "dibpy-build.json").read_text())
    return Run(secs, peak, out.with_suffix(".qcow2"), record["stages"])


def dib_venv() -> Path | None:
    venv = REPO / "bench" / ".dib-venv"
    if not (venv / "bin" / "disk-image-create").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "diskimage-builder"])
        if r.returncode != 0:
            return None
    return venv


STANDINS = REPO / "bench" / "dib-standins"


def dib_standins() -> list[str]:
    """What diskimage-builder needs that this host lacks and bench/dib-standins/ provides.

    diskimage-builder maps partitions with kpartx (device-mapper) and runs everything
    through sudo. The stand-ins map the kernel's own partx partitions to the /dev/mapper
    names kpartx would give, and run sudo's command directly when we are root already.
    debian-minimal vm (an MBR layout) needs no vfat, so no vfat stand-in is needed here.
    """
    missing = [t for t in ("sudo", "kpartx", "dmsetup") if shutil.which(t) is None]
    if not device_mapper_works():
        missing += [t for t in ("kpartx", "dmsetup") if t not in missing]
    return missing


def device_mapper_works() -> bool:
    """/dev/mapper/control may exist without a device-mapper driver behind it (ENODEV)."""
    try:
        os.close(os.open("/dev/mapper/control", os.O_RDWR))
    except OSError:
        return False
    return True


def dib_build(venv: Path, work: Path, name: str, cache: Path, standins: bool, what: str) -> Run:
    path = f"{venv}/bin:{os.environ['PATH']}"
    if standins:
        path = f"{STANDINS}:{path}"
    env = dict(os.environ, DIB_IMAGE_CACHE=str(cache), PATH=path, **COMMON_ENV, **dib_mirror_env())
    out = work / name
    cmd = [str(venv / "bin" / "disk-image-create"), "-o", str(out), *ELEMENTS]
    log = work / f"{name}-{what}.log"
    secs, peak = timed(cmd, env, log)
    return Run(secs, peak, out.with_suffix(".qcow2"), dib_stages(log))


def dib_stages(log: Path) -> list[dict[str, object]]:
    """diskimage-builder's per-phase seconds, from the profile dib-run-parts logs after
    each phase: "Target: root.d", then one "SCRIPT  SECONDS" row per hook, then
    "END PROFILING"."""
    stages: list[dict[str, object]] = []
    target: str | None = None
    total = 0.0
    for line in log.read_text(errors="replace").splitlines():
        text = line.split("dib-run-parts", 1)[-1].strip() if "dib-run-parts" in line else ""
        m = re.match(r"Target: (\S+)", text)
        if m:
            target, total = m.group(1), 0.0
        elif target is not None and "END PROFILING" in text:
            stages.append({"name": target, "seconds": round(total, 1)})
            target = None
        elif target is not None:
            row = re.match(r"\S+\s+(\d+\.\d+)$", text)
            if row:
                total += float(row.group(1))
    return stages


def boot(image: Path, log: Path) -> tuple[float, dict[str, float]]:
    """Seconds from QEMU's start to the login prompt, and when the kernel and the init
    system printed their first lines (the console log with them is kept as LOG)."""
    from dibpy.boottest import BootTest

    res = BootTest(image=image, timeout=900, console_log=log).run()
    return res.seconds_to_prompt, res.milestones()


def report(
    tool: str, cold: Run, warm: Run, booted: tuple[float, dict[str, float]] | None
) -> dict[str, float]:
    size = warm.image.stat().st_size / 2**20
    print(
        f"{tool}: cold {cold.seconds:.1f} s, warm {warm.seconds:.1f} s, qcow2 {size:.1f} MiB, "
        f"peak memory {max(cold.peak_mib, warm.peak_mib):.0f} MiB"
        + (f", boot to login {booted[0]:.1f} s" if booted is not None else "")
    )
    for title, r in (("cold", cold), ("warm", warm)):
        if r.stages:
            print(f"  {tool} {title} stages:")
            for s in r.stages:
                sec = float(s["seconds"])  # type: ignore[arg-type]
                print(f"    {s['name']:<20} {sec:7.1f} s  {100 * sec / r.seconds:5.1f} %")
    if booted is not None:
        print(f"  {tool} boot (seconds after QEMU started):")
        for name, at in booted[1].items():
            print(f"    {name:<20} {at:7.1f} s")
    return {
        "cold": cold.seconds,
        "warm": warm.seconds,
        "size": size,
        "boot": booted[0] if booted is not None else 0.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", type=Path)
    p.add_argument("--no-boot", action="store_true")
    p.add_argument("--dibpy-only", action="store_true")
    p.add_argument("--no-checkpoints", action="store_true", help="skip bench/checkpoints.py")
    p.add_argument("--no-parallel", action="store_true", help="skip bench/parallel.py")
    args = p.parse_args()
    work = args.out or Path("/var/tmp/dibpy-bench")
    work.mkdir(parents=True, exist_ok=True)
    venv = None
    standins: list[str] = []
    if not args.dibpy_only:
        venv = dib_venv()
        if venv is None:
            print("diskimage-builder could not be installed; reporting dibpy alone")
        standins = dib_standins()
        if venv is not None and standins:
            print(
                f"this host lacks {', '.join(standins)}: diskimage-builder runs with the "
                f"stand-ins in {STANDINS.relative_to(REPO)}/"
            )
    results: dict[str, list[dict[str, float]]] = {"dibpy": [], "diskimage-builder": []}
    for rnd in range(args.rounds):
        # alternate which tool goes first, so drift on a noisy machine hits both
        tools = ["dibpy", "diskimage-builder"] if rnd % 2 == 0 else ["diskimage-builder", "dibpy"]
        for tool in tools:
            if tool == "diskimage-builder" and venv is None:
                continue
            cache = work / f"cache-{tool}-{rnd}"
            shutil.rmtree(cache, ignore_errors=True)
            # the rebuild is the same command again: the same -o (each tool moves the
            # first image aside), so dibpy's image cache can answer it
            if tool == "dibpy":
                cold = dibpy_build(work, f"dibpy-{rnd}", cache, "cold")
                warm = dibpy_build(work, f"dibpy-{rnd}", cache, "warm")
            else:
                assert venv is not None
                cold = dib_build(venv, work, f"dib-{rnd}", cache, bool(standins), "cold")
                warm = dib_build(venv, work, f"dib-{rnd}", cache, bool(standins), "warm")
            b = None if args.no_boot else boot(warm.image, work / f"{tool}-boot-{rnd}.log")
            results[tool].append(report(tool, cold, warm, b))
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"figures of every round: {work / 'results.json'}")
    # (what, ratio, goal): every goal of the cache and performance issues
    verdicts: list[tuple[str, float, float]] = []
    if results["diskimage-builder"]:

        def mean(tool: str, k: str) -> float:
            return sum(r[k] for r in results[tool]) / len(results[tool])

        goals = {"cold": 0.3, "warm": 0.05, "size": 0.75, "boot": 0.6}
        for k, goal in goals.items():
            if mean("diskimage-builder", k):
                ratio = mean("dibpy", k) / mean("diskimage-builder", k)
                verdicts.append((f"{k} (dibpy / diskimage-builder)", ratio, goal))
    if not args.no_checkpoints:
        verdicts += own_bench("checkpoints.py", work / "checkpoints", CHECKPOINT_GOALS)
    if not args.no_parallel:
        verdicts += own_bench("parallel.py", work / "parallel", PARALLEL_GOALS)
    print("\nevery goal (means of the rounds):")
    for what, ratio, goal in verdicts:
        verdict = "met" if ratio <= goal else "NOT met"
        print(f"  {what:<44} {ratio:5.2f}  (<= {goal}: {verdict})")
    return 0


#: the ratio lines bench/checkpoints.py and bench/parallel.py print: pattern -> (what, goal)
CHECKPOINT_GOALS = {
    r"(?m)^cold cache-on / --no-cache\s+([\d.]+)": ("cold cache-on / --no-cache", 1.05),
    r"(?m)^post-install.d edit / cold\s+([\d.]+)": ("post-install.d edit / dibpy cold", 0.35),
    r"(?m)^install.d edit / cold\s+([\d.]+)": ("install.d edit / dibpy cold", 0.6),
}
PARALLEL_GOALS = {r"(?m)^ratio:\s+([\d.]+)x": ("4 images -j 2 / one after another", 0.65)}


def own_bench(
    script: str, out: Path, goals: dict[str, tuple[str, float]]
) -> list[tuple[str, float, float]]:
    """Run bench/SCRIPT into OUT, show what it prints, and pick out its ratios."""
    print(f"\n--- bench/{script} ---", flush=True)
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    print(r.stdout, end="")
    if r.returncode != 0:
        print(f"bench/{script} failed (exit {r.returncode}): {r.stderr.strip()[-1500:]}")
        return []
    found = []
    for pattern, (what, goal) in goals.items():
        m = re.search(pattern, r.stdout)
        if m:
            found.append((what, float(m.group(1)), goal))
    return found


if __name__ == "__main__":
    sys.exit(main())
