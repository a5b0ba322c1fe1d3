"""Outputs made of several files: a VMDK descriptor and its extents, a ``.vmx`` and its disk.

A split VMDK (``twoGbMaxExtentSparse``: ``NAME.vmdk`` + ``NAME-s001.vmdk`` ...;
``twoGbMaxExtentFlat``: ``NAME-f001.vmdk`` ...) names its extents inside the descriptor,
relative to it, so the set cannot be written under temporary *file* names and renamed:
it is written under its final names inside a temporary directory beside the output and
each file is then renamed into place (:func:`place`), the extents before the descriptor
that names them.  Every file is whole before it gets its final name; when a rename fails,
the files already placed are removed again.

:func:`members` lists the files of an existing set (the file itself first), so that an
old image is kept, checksummed or replaced as one (:func:`rename_set`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

#: what starts a VMDK text descriptor
DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
#: a descriptor is small; a bigger file is a monolithic disk (its descriptor is embedded)
DESCRIPTOR_MAX = 64 * 1024
_EXTENT = re.compile(r'^(?:RW|RDONLY|NOACCESS)\s+\d+\s+[A-Z]+\s+"([^"]+)"', re.M)
#: the .vmx key naming the VM's disk (``scsi0:0.fileName``, ``sata0:0.fileName``)
_VMX_DISK = re.compile(r'^\s*(?:scsi|sata|ide|nvme)\d+:\d+\.fileName\s*=\s*"([^"]+)"', re.M)


def _text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > DESCRIPTOR_MAX:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return data.decode("utf-8", "replace")


def vmdk_extents(descriptor: Path) -> list[Path]:
    """The extent files a VMDK text descriptor names (none for a monolithic VMDK)."""
    text = _text(descriptor)
    if text is None or not text.startswith(DESCRIPTOR_MAGIC.decode()):
        return []
    return [descriptor.with_name(Path(n).name) for n in _EXTENT.findall(text)]


def vmx_disks(vmx: Path) -> list[Path]:
    """The disk files a ``.vmx`` names (relative names are beside it)."""
    text = _text(vmx)
    if text is None:
        return []
    return [vmx.with_name(Path(n).name) for n in _VMX_DISK.findall(text)]


def members(path: Path) -> list[Path]:
    """``path`` and every file it needs: a .vmx's disks and their extents, a descriptor's
    extents.  Only files that exist are listed; order: the referencing file first."""
    out = [path] if path.exists() else []
    if path.suffix == ".vmx":
        for disk in vmx_disks(path):
            out += [m for m in members(disk) if m not in out]
    elif path.suffix == ".vmdk":
        out += [e for e in vmdk_extents(path) if e.exists() and e not in out]
    return out


def place(files: Sequence[Path], dest_dir: Path) -> list[Path]:
    """Rename each of ``files`` (in a temporary directory) to ``dest_dir``, in reverse
    order (so the referencing first file arrives last).  Returns the placed paths, in the
    order given; on a failure the ones already placed are removed and the error raised."""
    placed: list[Path] = []
    try:
        for f in reversed(files):
            target = dest_dir / f.name
            os.replace(f, target)
            placed.append(target)
    except BaseException:
        for p in placed:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise
    return list(reversed(placed))


def renamed(path: Path, old_name: Path, new_name: Path) -> Path:
    """``NAME-s001.vmdk`` for the set ``NAME.vmdk`` renamed to ``OTHER.vmdk``:
    ``OTHER-s001.vmdk`` (a member not named after the set keeps its name)."""
    old_stem, new_stem = old_name.stem, new_name.stem
    if path.name.startswith(old_stem):
        return new_name.with_name(new_stem + path.name[len(old_stem) :])
    return new_name.with_name(path.name)


def rename_set(src: Path, dest: Path) -> list[Path]:
    """Rename the set ``src`` (and its members) to ``dest``, rewriting the names inside
    the referencing files so the renamed set still opens.  Returns the new paths."""
    files = members(src)
    if len(files) <= 1:
        os.replace(src, dest)
        return [dest]
    new = {f: renamed(f, src, dest) for f in files}
    # the members first, then the referencing files, rewritten under a temporary name
    for f in reversed(files):
        text = _text(f) if f.suffix in (".vmx", ".vmdk") else None
        if text is not None and (text.startswith(DESCRIPTOR_MAGIC.decode()) or f.suffix == ".vmx"):
            for old, to in new.items():
                text = text.replace(f'"{old.name}"', f'"{to.name}"')
            tmp = new[f].with_name(f".{new[f].name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, new[f])
            f.unlink()
        else:
            os.replace(f, new[f])
    return [new[f] for f in files]


def remove_set(path: Path, keep: Sequence[Path] = ()) -> None:
    """Remove ``path`` and its members, except those in ``keep``."""
    for m in members(path):
        if m not in keep:
            with contextlib.suppress(FileNotFoundError):
                m.unlink()
