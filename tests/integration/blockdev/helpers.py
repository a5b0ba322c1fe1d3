"""Driving the real dib-block-device command and looking at its image from outside."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / "bin" / "dib-block-device"


class Cli:
    """One build directory and its params file; runs dib-block-device subcommands."""

    def __init__(
        self,
        tmp: Path,
        config: Path | str,
        image_size: str = "1GiB",
        env: dict[str, str] | None = None,
        **params: Any,
    ) -> None:
        self.tmp = tmp
        self.mnt = tmp / "mnt"
        self.build = tmp / "build"
        self.image = tmp / "img" / "image0.raw"
        if isinstance(config, str):
            path = tmp / "config.yaml"
            path.write_text(config)
            config = path
        data = {
            "config": str(config),
            "image-dir": str(tmp / "img"),
            "mount-base": str(self.mnt),
            "build-dir": str(self.build),
            "root-fs-type": "ext4",
            "image-size": image_size,
            **params,
        }
        self.params = tmp / "params.yaml"
        self.params.write_text(yaml.safe_dump(data))
        self.env = {**os.environ, **(env or {})}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, str(BIN), "--params", str(self.params), *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=300, check=False
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stderr}")
        return r

    def getval(self, symbol: str) -> str:
        return self.run("getval", symbol).stdout.strip()

    def state(self) -> dict[str, Any]:
        p = self.build / "states" / "block-device" / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def live(self) -> list[dict[str, Any]]:
        return [e for e in self.state().get("resources", []) if not e.get("released")]


def partitions(image: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
    ).stdout
    table: dict[str, Any] = json.loads(out)["partitiontable"]
    return list(table["partitions"])


def table(image: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out)["partitiontable"]
    return result


@contextlib.contextmanager
def partition_device(image: Path, part: dict[str, Any], sector: int = 512) -> Iterator[str]:
    """A read-only loop device over one partition of the finished image."""
    dev = subprocess.run(
        [
            "losetup",
            "--show",
            "-f",
            "-r",
            "-o",
            str(part["start"] * sector),
            "--sizelimit",
            str(part["size"] * sector),
            str(image),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def blkid(dev: str) -> dict[str, str]:
    out = subprocess.run(
        ["blkid", "-p", "-o", "export", dev], capture_output=True, text=True, check=False
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def sh(*argv: str) -> str:
    r = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    assert r.returncode == 0, f"{argv} failed ({r.returncode}): {r.stdout}{r.stderr}"
    return r.stdout
