"""The image cache: an unchanged rebuild's outputs, copied into place instead of built.

A build whose every input is the same as an earlier one's makes the same image, so its
outputs are kept and a rebuild copies them.  The key (:func:`image_inputs`) covers what
the tree cache's last checkpoint covers (its key: elements, settings, hook-visible
variables, the package archive's state, source repositories, declared inputs) and what
only the image steps read: every file of every element (the block-device, finalise and
cleanup hooks, the block-device layouts), the resolved block-device config, every build
setting (output types and options, sizes, filesystem, labels, checksums), the variables
the tree key leaves out because they only shape the image (``DIB_QCOW2_*``,
``DIB_CHECKSUM``, ...), and the output's file name (some formats name their own files).

An entry is the directory ``<image cache>/dibpy-trees/KEY.image/`` (the output files as
the build wrote them beside ``-o``, and ``dib-manifests/``) with its metadata
``KEY.image.json``; ``dibpy cache list`` shows it as ``image``.  It is reused under the
tree cache's rules (``DIB_TREE_CACHE_MAX_AGE``, ``--no-cache``, ``DIB_CACHE_MAX_SIZE``)
and ``DIB_IMAGE_CACHE_OUTPUTS=0`` turns it off; a build with a ``break=`` point or without
a final image (a ramdisk) neither uses nor keeps one.  Entries are copied in
whole under a temporary name and renamed, so a reader never sees half of one; the
newest two per element set are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from dibpy import __version__, run, treecache
from dibpy.config import BuildConfig
from dibpy.elements.model import Element
from dibpy.errors import DibpyError
from dibpy.outputs.write import partial_path

LOG = logging.getLogger("dibpy")

IMAGE = treecache.IMAGE
MANIFESTS = "dib-manifests"
#: entries kept per element set
KEEP_PER_SET = 2
#: build settings that cannot change the image (where it is built, how it is logged and
#: cached, what happens after it is written)
_NOT_IMAGE_FIELDS = frozenset(
    {
        "environ",
        "argv",
        "image_name",
        "image_cache",
        "tmp_dir",
        "logfile",
        "boot_test",
        "no_cache",
        "tree_cache_max_age",
        "tree_cache_layers",
        "image_cache_outputs",
        "offline",
        "strict",
        "min_tmpfs",
        "no_tmpfs",
        "overwrite_old_image",
        "debug_trace",
    }
)
#: variables that cannot change the image: how dibpy caches, logs and builds it
_NOT_IMAGE_VARS = frozenset(
    {
        "DIB_IMAGE_CACHE",
        "DIB_IMAGE_CACHE_OUTPUTS",
        "DIB_OFFLINE",
        "DIB_DEBUG_TRACE",
        "DIB_TREE_CACHE_MAX_AGE",
        "DIB_TREE_CACHE_LAYERS",
        "DIB_TREE_CACHE_IGNORE_VARS",
        "DIB_CACHE_MAX_SIZE",
        "DIB_NO_TMPFS",
        "DIB_MIN_TMPFS",
        "OVERWRITE_OLD_IMAGE",
    }
)


def image_inputs(
    tree_key: str,
    elements: Iterable[Element],
    cfg: BuildConfig,
    block_device_text: str,
) -> dict[str, str]:
    """Each input of the image's key and its fingerprint (see the module docstring)."""
    out = {"tree": tree_key, "output name": cfg.output_base.name}
    for el in elements:
        h = hashlib.sha256()
        treecache._hash_dir(h, el.path)
        out[f"element {el.name}"] = h.hexdigest()[:16]
    for f in dataclasses.fields(cfg):
        if f.name not in _NOT_IMAGE_FIELDS:
            out[f"setting {f.name}"] = treecache._short(repr(getattr(cfg, f.name)))
    out["block-device config"] = treecache._short(block_device_text)
    env = {k: v for k, v in cfg.environ.items() if k not in _NOT_IMAGE_VARS}
    seen = treecache.hook_visible(env, clear_env=cfg.clear_env)
    for k, v in env.items():
        # the variables the tree key leaves out because only the image steps read them
        if k.startswith("DIB_") and k not in seen and k not in _NOT_IMAGE_VARS:
            out[f"variable {k}"] = treecache._short(v)
    return out


def image_key(inputs: Mapping[str, str]) -> str:
    h = hashlib.sha256(f"dibpy {__version__} image\n".encode())
    for k, v in sorted(inputs.items()):
        h.update(f"{k}\0{v}\n".encode())
    return h.hexdigest()


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    d = cache_dir / "dibpy-trees"
    return d / f"{key}{IMAGE}", d / f"{key}{IMAGE}.json"


def lookup(cache_dir: Path, key: str, max_age: int) -> tuple[Path, float] | None:
    """The entry ``key`` and its age in seconds, if it is whole and young enough."""
    entry, meta = _paths(cache_dir, key)
    try:
        created = float(json.loads(meta.read_text())["created"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    age = time.time() - created
    if not entry.is_dir() or max_age <= 0 or age > max_age:
        return None
    return entry, age


def _copy(src: Path, dest: Path) -> None:
    run.run(
        ["cp", "-a", "--reflink=auto", "--sparse=always", "--", str(src), str(dest)], quiet=True
    )


def reuse(entry: Path, output_dir: Path, keep_old: Callable[[Path], None]) -> list[Path]:
    """Copy the entry's output files into ``output_dir`` (each under a temporary name,
    then renamed; ``keep_old(dest)`` first, as a fresh build's outputs do); returns them.
    The entry's ``dib-manifests`` is the caller's to copy."""
    meta = entry.with_name(entry.name + ".json")
    fd = os.open(meta, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # held while it is copied: a prune elsewhere leaves it alone meanwhile
        fcntl.flock(fd, fcntl.LOCK_SH)
        with contextlib.suppress(OSError):
            os.utime(fd)
        return _copy_out(entry, output_dir, keep_old)
    finally:
        os.close(fd)


def _copy_out(entry: Path, output_dir: Path, keep_old: Callable[[Path], None]) -> list[Path]:
    written = []
    for src in sorted(entry.iterdir()):
        if src.name == MANIFESTS:
            continue
        dest = output_dir / src.name
        partial = partial_path(dest)
        try:
            _copy(src, partial)
            keep_old(dest)
            os.replace(partial, dest)
        finally:
            if partial.is_dir() and not partial.is_symlink():
                shutil.rmtree(partial, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                partial.unlink()
        written.append(dest)
    return written


def open_elsewhere(paths: Iterable[Path]) -> set[Path]:
    """Which of ``paths`` some process has open: not a finished output but, say, the log
    the user's shell is writing beside ``-o`` (``-o img ... > img.log``), which a reuse
    must not replace."""
    want = {os.path.realpath(p): p for p in paths}
    found: set[Path] = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target in want:
                    found.add(want[target])
    return found


def keep(
    cache_dir: Path,
    key: str,
    files: Sequence[Path],
    manifests: Path | None,
    describe: Mapping[str, object],
) -> None:
    """Keep ``files`` (the outputs just written) and ``manifests`` as entry ``key``; a
    failure is a warning, never the build's error."""
    entry, meta = _paths(cache_dir, key)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.partial")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(entry.parent)
        need = sum(f.stat().st_size for f in files if f.is_file()) + (1 << 30)
        if st.f_bavail * st.f_frsize < need:
            LOG.info("image cache: not keeping the outputs: too little room in %s", entry.parent)
            return
        tmp.mkdir()
        for f in files:
            _copy(f, tmp / f.name)
        if manifests is not None and manifests.is_dir():
            _copy(manifests, tmp / MANIFESTS)
        data = {"created": time.time(), "key": key, "after": "image", **describe}
        if not treecache.publish(tmp, entry, meta, data):
            # another build of the same inputs kept it first: the same image
            shutil.rmtree(tmp)
            return
        _prune(cache_dir, str(describe.get("elements", "")))
    except (OSError, DibpyError) as e:
        LOG.warning("image cache: could not keep the outputs: %s", e)
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            tmp.with_name(tmp.name + ".json-partial").unlink()


def _prune(cache_dir: Path, element_set: str) -> None:
    same = [
        e for e in treecache.entries(cache_dir) if e.kind == IMAGE and e.elements == element_set
    ]
    for e in sorted(same, key=lambda e: -e.created)[KEEP_PER_SET:]:
        treecache.remove(e)
