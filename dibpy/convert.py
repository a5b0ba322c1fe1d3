"""``dibpy convert``: between disk image formats, with the output plugins' options and checks.

The output is written by the same plugin a build uses for that format (same options,
same check after writing) under a temporary name and renamed into place when it passed.
A non-raw input is first read into a sparse temporary raw image next to the output.

The input's format comes from its own signatures (:mod:`dibpy.imageformat`), not from
qemu-img's probe: a fixed VHD is a VHD, and a file that is neither an image format nor a
disk with a partition table or filesystem is refused unless ``-f raw`` says it is one.
A damaged or truncated input is refused before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from dibpy import inspect as dinspect
from dibpy import outputs, run
from dibpy.errors import ConfigError, DibpyError
from dibpy.outputs import OutputOptions, OutputPlugin

#: formats ``dibpy convert`` reads (qemu-img's ``vpc`` is ``vhd``)
INPUTS = ("raw", "qcow2", "vhd", "vhdx", "vmdk", "ova", "vdi", "qed", "parallels")
INPUT_ALIASES = {"vpc": "vhd", "img": "raw"}
EXTENSIONS = {
    "raw": "raw",
    "img": "raw",
    "qcow2": "qcow2",
    "vhd": "vhd",
    "vpc": "vhd",
    "vhdx": "vhdx",
    "vmdk": "vmdk",
    "ova": "ova",
    "vmx": "vmware",
}


def output_format(dest: Path, fmt: str | None) -> OutputPlugin:
    name = fmt or EXTENSIONS.get(dest.suffix.lstrip(".").lower())
    if name is None:
        raise ConfigError(
            f"cannot tell the output format of {dest} from its extension",
            hint="give -O FORMAT (raw, qcow2, vhd, vhdx, vmdk, ova, vmware)",
        )
    plugin = outputs.get(name)
    if plugin.needs_tree:
        raise ConfigError(
            f"-O {name} is made from a file tree, not from a disk image",
            hint="convert writes raw, qcow2, vhd, vhdx, vmdk, ova, vmware",
        )
    return plugin


def convert_image(
    src: Path,
    dest: Path,
    *,
    out_format: str | None = None,
    in_format: str | None = None,
    opts: OutputOptions | None = None,
    force: bool = False,
) -> list[Path]:
    """Convert ``src`` to ``dest``; returns the files written (the output, companions)."""
    opts = opts or OutputOptions()
    if not src.is_file():
        raise ConfigError(f"{src}: no such file")
    if dest.exists() and dest.resolve() == src.resolve():
        raise ConfigError(f"{dest} is the input: write the output somewhere else")
    if dest.exists() and not force:
        raise ConfigError(f"{dest} exists", hint="use --force to replace it")
    plugin = output_format(dest, out_format)
    if in_format is not None:
        in_format = INPUT_ALIASES.get(in_format, in_format)
        if in_format not in INPUTS:
            raise ConfigError(f"-f {in_format}: not an input format ({', '.join(INPUTS)})")
    # the output's options first: they need no reading of the input
    outputs.validate([plugin], opts)
    fmt = in_format or dinspect.detect_format(src)
    if fmt not in INPUTS:
        raise DibpyError(
            f"{src} is a {fmt} image, which dibpy convert does not read",
            hint=f"it reads {', '.join(INPUTS)}",
        )
    dinspect.check_input(src, fmt)
    if not opts.image_name:
        from dataclasses import replace

        opts = replace(opts, image_name=dest.name.split(".")[0])
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the raw copy goes to TMPDIR, like dibpy info's; the output is written beside dest
    with dinspect.raw_view(src, fmt) as raw:
        return outputs.write_one(plugin, raw, dest, opts)


def which_qemu_img() -> None:
    if run.which("qemu-img") is None:
        raise ConfigError("qemu-img is not installed", hint="install qemu-utils")
