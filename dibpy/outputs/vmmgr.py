"""``-t vmmgr``: a VM-manager OS template archive (see :mod:`dibpy.outputs.vmmgr_template`).

The disk image goes in raw, as the manager's instructions make it, unless the metadata
asks for qcow2 (``disk_format: qcow2``; compressed unless ``-u``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from dibpy.outputs import vmmgr_template as vmmgr
from dibpy.outputs.base import OutputOptions, OutputPlugin
from dibpy.outputs.qemu import check_image, convert


class VmManager(OutputPlugin):
    name = "vmmgr"
    extension = "vmmgr.tar.gz"
    programs = ("qemu-img",)

    def __init__(self) -> None:
        self.meta: vmmgr.Metadata | None = None
        self.hddimage = ""

    def _name(self, opts: OutputOptions, dest: Path) -> str:
        return opts.image_name or dest.name.lstrip(".").split(".")[0] or "image"

    def validate(self, opts: OutputOptions) -> None:
        vmmgr.load(opts.environ, opts.image_name or "image")

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        name = self._name(opts, dest)
        self.meta = meta = vmmgr.load(opts.environ, name)
        self.hddimage = meta.hddimage_for(name)
        tmp = Path(tempfile.mkdtemp(prefix=".vmmgr-", dir=dest.parent))
        try:
            disk = tmp / self.hddimage
            if meta.disk_format == "raw":
                disk = raw
            else:
                convert(raw, disk, "qcow2", compress=not opts.uncompressed, label="vmmgr")
                check_image(disk, "qcow2", virtual_size=raw.stat().st_size, what="vmmgr disk")
            vmmgr.write_archive(dest, meta, disk, self.hddimage, raw.stat().st_size)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def check(self, dest: Path) -> None:
        vmmgr.check_archive(dest)

    def finish(self, dest: Path, opts: OutputOptions) -> list[Path]:
        meta = self.meta or vmmgr.load(opts.environ, self._name(opts, dest))
        entry = vmmgr.metadata_entry(
            dest, meta, self.hddimage or meta.hddimage_for(self._name(opts, dest))
        )
        out = dest.with_name(dest.name.removesuffix(".tar.gz") + ".metadata.json")
        out.write_text(json.dumps(entry, indent=2) + "\n")
        written = [out]
        if meta.repository is not None:
            vmmgr.add_to_repository(meta.repository, entry)
            written.append(meta.repository)
        return written
