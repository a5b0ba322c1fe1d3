"""Disk image outputs written and checked with qemu-img: raw, qcow2, vhd, vhdx, vmdk."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from dibpy import progress, run
from dibpy.errors import DibpyError
from dibpy.outputs import options as qopts
from dibpy.outputs.base import MIB, OutputOptions, OutputPlugin

#: qemu-img check's exit status for "this format has no consistency check"
CHECK_UNSUPPORTED = 63


def qemu_img_info(path: Path, fmt: str | None = None) -> dict[str, Any]:
    argv = ["qemu-img", "info", "--output=json"]
    if fmt:
        argv += ["-f", fmt]
    out = run.output([*argv, str(path)])
    try:
        info: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError:
        raise DibpyError(f"qemu-img info {path}: unreadable output") from None
    return info


def coroutines() -> str:
    # several coroutines: compression then uses more than one core
    return str(max(2, min(8, os.cpu_count() or 2)))


def convert(
    src: Path,
    dest: Path,
    out_fmt: str,
    *,
    src_fmt: str | None = "raw",
    create_opts: Mapping[str, str] | None = None,
    compress: bool = False,
    label: str | None = None,
) -> None:
    """``qemu-img convert`` with a progress line on a terminal."""
    argv = ["qemu-img", "convert"]
    if src_fmt:
        argv += ["-f", src_fmt]
    argv += ["-O", out_fmt, "-m", coroutines()]
    if compress:
        argv.append("-c")
        if out_fmt == "qcow2":
            # qcow2 compresses a cluster as part of writing it: in-order writes leave one
            # compression at a time, out-of-order ones (-W) one per coroutine.  Measured:
            # the 1.5 GiB image of `debian-minimal vm` in 2.4 s instead of 4.2 s on 2 cores;
            # its clusters are then not in guest order in the file, which costs a reader
            # nothing (qcow2 maps each one)
            argv.append("-W")
    if create_opts:
        argv += ["-o", qopts.to_argument(create_opts)]
    argv += [str(src), str(dest)]
    total = progress.allocated_bytes(src)
    with progress.watch(label or out_fmt, total, progress.child_reading(str(dest))):
        run.run(argv)


def check_image(
    dest: Path,
    fmt: str,
    *,
    virtual_size: int | None = None,
    specific: Mapping[str, Any] | None = None,
    what: str | None = None,
    probe: bool = True,
) -> dict[str, Any]:
    """Check ``dest`` with qemu-img: consistency, detected format, size, format options.

    ``specific`` maps keys of qemu-img info's ``format-specific.data`` to the values the
    image must have (e.g. ``{"compat": "0.10"}``).  Raises DibpyError naming the file.
    """
    name = what or fmt
    if not dest.is_file() or dest.stat().st_size == 0:
        raise DibpyError(f"{name} output {dest} is missing or empty")
    # probe the format rather than name it: what a hypervisor would see (a fixed VHD has
    # only a footer, which qemu does not probe for: its caller names the format)
    r = run.run(
        ["qemu-img", "info", "--output=json", *(["-f", fmt] if not probe else []), str(dest)],
        check=False,
    )
    if r.returncode != 0:
        raise DibpyError(
            f"{name} output {dest} cannot be read by qemu-img: {r.stderr.strip()[-300:]}"
        )
    info: dict[str, Any] = json.loads(r.stdout)
    if info.get("format") != fmt:
        raise DibpyError(
            f"{name} output {dest} is not a {fmt} image (qemu-img sees {info.get('format')})"
        )
    r = run.run(["qemu-img", "check", "-f", fmt, str(dest)], check=False)
    if r.returncode not in (0, CHECK_UNSUPPORTED):
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise DibpyError(
            f"{name} output {dest} fails qemu-img check (status {r.returncode}): "
            + " / ".join(tail),
            hint="the image is corrupt; rebuild it",
        )
    if virtual_size is not None and info.get("virtual-size") != virtual_size:
        raise DibpyError(
            f"{name} output {dest} has virtual size {info.get('virtual-size')}, "
            f"expected {virtual_size}"
        )
    data = (info.get("format-specific") or {}).get("data") or {}
    for key, want in (specific or {}).items():
        if data.get(key) != want:
            raise DibpyError(f"{name} output {dest}: {key} is {data.get(key)!r}, expected {want!r}")
    return info


class Raw(OutputPlugin):
    name = "raw"
    extension = "raw"

    def __init__(self) -> None:
        self.size: int | None = None

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        self.size = raw.stat().st_size
        # a hard link when on the same filesystem; else a sparse copy
        try:
            os.link(raw, dest)
        except OSError:
            with progress.watch(
                "raw", progress.allocated_bytes(raw), progress.child_reading(str(dest))
            ):
                run.run(["cp", "--sparse=always", "--reflink=auto", str(raw), str(dest)])

    def check(self, dest: Path) -> None:
        if not dest.is_file() or dest.stat().st_size == 0:
            raise DibpyError(f"raw output {dest} is missing or empty")
        if self.size is not None and dest.stat().st_size != self.size:
            raise DibpyError(
                f"raw output {dest} is {dest.stat().st_size} bytes, expected {self.size}"
            )


class QemuOutput(OutputPlugin):
    """A format qemu-img converts to directly."""

    qemu_format: ClassVar[str] = ""
    programs = ("qemu-img",)

    def __init__(self) -> None:
        self.virtual_size: int | None = None
        self.create_opts: dict[str, str] = {}

    def options(self, opts: OutputOptions) -> dict[str, str]:
        return qopts.resolve(
            self.name, opts.qemu_img_options, opts.environ, compressed=self.compress(opts)
        )

    def validate(self, opts: OutputOptions) -> None:
        self.options(opts)

    def compress(self, opts: OutputOptions) -> bool:
        return False

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        self.create_opts = self.options(opts)
        with self.sized_source(raw, dest) as src:
            # qemu-img rounds a disk up to whole 512-byte sectors
            self.virtual_size = round_up(src.stat().st_size, 512)
            convert(
                src,
                dest,
                self.qemu_format,
                create_opts=self.create_opts,
                compress=self.compress(opts),
                label=self.name,
            )

    @contextlib.contextmanager
    def sized_source(self, raw: Path, dest: Path) -> Iterator[Path]:
        yield raw

    def expected(self) -> dict[str, Any]:
        return {}

    def check(self, dest: Path) -> None:
        check_image(
            dest,
            self.qemu_format,
            virtual_size=self.virtual_size,
            specific=self.expected(),
            what=self.name,
        )


class Qcow2(QemuOutput):
    name = "qcow2"
    extension = "qcow2"
    qemu_format = "qcow2"

    def compress(self, opts: OutputOptions) -> bool:
        # never dropped silently: a preallocation without -u is refused while planning
        return qopts.compresses(self.name, opts.uncompressed)

    def expected(self) -> dict[str, Any]:
        want: dict[str, Any] = {}
        compat = self.create_opts.get("compat")
        if compat:
            want["compat"] = {"v2": "0.10", "v3": "1.1"}.get(compat, compat)
        if "compression_type" in self.create_opts:
            want["compression-type"] = self.create_opts["compression_type"]
        if "lazy_refcounts" in self.create_opts:
            want["lazy-refcounts"] = self.create_opts["lazy_refcounts"] == "on"
        return want


def round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


class Vhd(QemuOutput):
    """VHD (qemu-img's ``vpc``), virtual size a whole number of MiB as Azure requires."""

    name = "vhd"
    extension = "vhd"
    qemu_format = "vpc"

    @contextlib.contextmanager
    def sized_source(self, raw: Path, dest: Path) -> Iterator[Path]:
        size = raw.stat().st_size
        if size % MIB == 0:
            yield raw
            return
        # never touch the build's raw image: pad a sparse copy up to the next MiB
        tmp = dest.with_name(dest.name + ".mib-raw")
        try:
            run.run(["cp", "--sparse=always", "--reflink=auto", str(raw), str(tmp)])
            os.truncate(tmp, round_up(size, MIB))
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def check(self, dest: Path) -> None:
        # the footer first: it is what makes a file a VHD (and qemu cannot probe a fixed one)
        size = vhd_footer_size(dest)
        check_image(dest, "vpc", virtual_size=self.virtual_size, what=self.name, probe=False)
        if size % MIB:
            raise DibpyError(f"vhd output {dest}: size {size} is not a whole MiB")


def vhd_footer_size(path: Path) -> int:
    """The "current size" field of a VHD footer (the last 512 bytes; fixed and dynamic)."""
    with open(path, "rb") as f:
        f.seek(-512, os.SEEK_END)
        footer = f.read(512)
    if footer[:8] != b"conectix":
        raise DibpyError(f"{path} has no VHD footer (no 'conectix' cookie at the end)")
    return int.from_bytes(footer[48:56], "big")


class Vhdx(QemuOutput):
    name = "vhdx"
    extension = "vhdx"
    qemu_format = "vhdx"


class Vmdk(QemuOutput):
    """A VMDK; a split one (``twoGbMaxExtentSparse``/``Flat``) is a set of files: the
    descriptor ``NAME.vmdk`` and its extents, written and placed as one
    (:mod:`dibpy.outputs.fileset`) and compared with the source after writing."""

    name = "vmdk"
    extension = "vmdk"
    qemu_format = "vmdk"
    file_set = True

    def __init__(self) -> None:
        super().__init__()
        self.source: Path | None = None

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        self.source = raw
        super().write(raw, dest, opts)

    def expected(self) -> dict[str, Any]:
        return {"create-type": self.create_opts.get("subformat", "monolithicSparse")}

    def check(self, dest: Path) -> None:
        super().check(dest)
        check_vmdk_set(dest, self.source if self.split() else None, what=self.name)

    def split(self) -> bool:
        return self.create_opts.get("subformat") in qopts.SPLIT_VMDK


def check_vmdk_set(dest: Path, source: Path | None, *, what: str = "vmdk") -> None:
    """Every extent the descriptor names exists and is not empty; with ``source``, qemu-img
    reads the whole disk back and finds it equal to the raw ``source``."""
    from dibpy.outputs import fileset

    info = qemu_img_info(dest, "vmdk")
    extents = (info.get("format-specific") or {}).get("data", {}).get("extents") or []
    named = fileset.vmdk_extents(dest)
    for e in named:
        if not e.is_file() or e.stat().st_size == 0:
            raise DibpyError(f"{what} output {dest}: its extent {e.name} is missing or empty")
    if named and len(extents) != len(named):
        raise DibpyError(
            f"{what} output {dest}: qemu-img reads {len(extents)} extents, "
            f"the descriptor names {len(named)}"
        )
    if source is not None:
        r = run.run(
            ["qemu-img", "compare", "-q", "-f", "raw", "-F", "vmdk", str(source), str(dest)],
            check=False,
        )
        if r.returncode != 0:
            raise DibpyError(
                f"{what} output {dest} does not read back as the image it was made from "
                f"(qemu-img compare status {r.returncode})",
                hint="the disk is damaged or the host's qemu-img is broken; rebuild it",
            )


def have_qemu_img() -> bool:
    return shutil.which("qemu-img") is not None
