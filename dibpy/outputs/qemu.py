"""raw and qcow2 outputs, written with qemu-img and checked with qemu-img."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dibpy import run
from dibpy.errors import DibpyError
from dibpy.outputs import OutputOptions, OutputPlugin


def qemu_img_info(path: Path) -> dict[str, object]:
    out = run.output(["qemu-img", "info", "--output=json", str(path)])
    info: dict[str, object] = json.loads(out)
    return info


class Raw(OutputPlugin):
    name = "raw"
    extension = "raw"

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        # a sparse copy: a rename would not cross from the build's tmpfs to the output dir
        try:
            os.link(raw, dest)
        except OSError:
            run.run(["cp", "--sparse=always", str(raw), str(dest)])

    def check(self, dest: Path) -> None:
        if not dest.is_file() or dest.stat().st_size == 0:
            raise DibpyError(f"raw output {dest} is empty")


class Qcow2(OutputPlugin):
    name = "qcow2"
    extension = "qcow2"

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        argv = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2"]
        if not opts.uncompressed:
            argv.append("-c")
        # several coroutines: compression then uses more than one core
        argv += ["-m", str(max(2, min(8, os.cpu_count() or 2)))]
        if opts.qemu_img_options:
            argv += ["-o", opts.qemu_img_options]
        run.run([*argv, str(raw), str(dest)])

    def check(self, dest: Path) -> None:
        run.run(["qemu-img", "check", "-f", "qcow2", str(dest)])
        info = qemu_img_info(dest)
        if info.get("format") != "qcow2":
            raise DibpyError(f"{dest} is not a qcow2 image (qemu-img says {info.get('format')})")


def have_qemu_img() -> bool:
    return shutil.which("qemu-img") is not None
