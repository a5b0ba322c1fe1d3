"""The installed-tree cache: reuse the tree of an unchanged build.

After post-root.d the build's tree is saved (tar + zstd) under a content hash of
everything that made it; a later build with the same hash restores it and skips root.d
through post-root.d.  The key covers:

* every file of every element in the build (path, mode, content, symlink target), except
  what only runs later (block-device.d, pre-finalise.d, finalise.d, cleanup.d, the
  block-device-*.yaml layouts) and READMEs;
* dibpy's version and its shell library ($_LIB);
* the build settings hooks can see: architecture, -p packages, install type, and every
  ``DIB_*`` variable except those that cannot change the tree (cache locations, tracing,
  output-format settings); variable values are hashed, never stored; a variable that
  names a file (``DIB_LOCAL_IMAGE``) also brings in the file's size and modification time.

Reuse is bounded and visible: it is logged with the entry's age, recorded in the build
record, refused past ``DIB_TREE_CACHE_MAX_AGE`` (default 24h; ``0`` disables reuse), and
switched off by ``--no-cache``.  Entries are written atomically (temporary name, rename)
and pruned to the newest few per element set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dibpy import __version__, run
from dibpy.elements.model import Element
from dibpy.errors import ConfigError

LOG = logging.getLogger("dibpy")

#: bump when the pipeline's tree phases change meaning
FORMAT = 1
#: element parts that only matter after the tree is cached
LATE_PARTS = (
    "block-device.d",
    "pre-finalise.d",
    "finalise.d",
    "cleanup.d",
    "tests",
    "test-elements",
)
#: variables that cannot change the tree
_IGNORED_VARS = re.compile(
    r"^DIB_(IMAGE_CACHE|OFFLINE|DEBUG_TRACE|TREE_CACHE_MAX_AGE|CHECKSUM|QEMU_IMG_OPTIONS|"
    r"(QCOW2|VHD|VHDX|VMDK|OVA|VMMGR|DOCKER|TAR|SQUASHFS)_.*|NO_TMPFS|MIN_TMPFS|"
    r"BLOCK_DEVICE_PARAMS_YAML|ARGS|ENV)$"
)
DEFAULT_MAX_AGE = 24 * 3600
KEEP_PER_SET = 3


def parse_age(value: str) -> int:
    m = re.match(r"^\s*([0-9]+)\s*([smhd]?)\s*$", value)
    if not m:
        raise ConfigError(
            f"DIB_TREE_CACHE_MAX_AGE={value!r}: not an age",
            hint="seconds, or with a unit: 90m, 12h, 7d; 0 turns reuse off",
        )
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _hash_element(h: hashlib._Hash, el: Element) -> None:
    h.update(f"element {el.name}\n".encode())
    for root, dirs, files in os.walk(el.path):
        dirs.sort()
        rel_root = Path(root).relative_to(el.path)
        if rel_root.parts and rel_root.parts[0] in LATE_PARTS:
            dirs[:] = []
            continue
        for name in sorted(files + [d for d in dirs if (Path(root) / d).is_symlink()]):
            p = Path(root) / name
            rel = (rel_root / name).as_posix()
            if not rel_root.parts and (
                name.startswith("README") or re.match(r"block-device-.*\.yaml$", name)
            ):
                continue
            if p.is_symlink():
                h.update(f"link {rel} {os.readlink(p)}\n".encode())
                continue
            mode = "x" if os.access(p, os.X_OK) else "-"
            h.update(f"file {rel} {mode}\n".encode())
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)


def _hash_dir(h: hashlib._Hash, d: Path) -> None:
    for p in sorted(d.rglob("*")):
        if p.is_file():
            h.update(f"lib {p.relative_to(d)}\n".encode())
            h.update(p.read_bytes())


def tree_key(
    elements: Iterable[Element],
    settings: Mapping[str, str],
    environ: Mapping[str, str],
    lib_dir: Path,
) -> str:
    """The content hash of everything that makes the tree (see the module docstring)."""
    h = hashlib.sha256()
    h.update(f"dibpy {__version__} tree format {FORMAT}\n".encode())
    for el in sorted(elements, key=lambda e: e.name):
        _hash_element(h, el)
    if lib_dir.is_dir():
        _hash_dir(h, lib_dir)
    for k, v in sorted(settings.items()):
        h.update(f"setting {k}={v}\n".encode())
    for k, v in sorted(environ.items()):
        if k.startswith("DIB_") and not _IGNORED_VARS.match(k):
            h.update(f"env {k}={v}\n".encode())
            # a variable naming a file (DIB_LOCAL_IMAGE, ...): a new file at the same path
            # is a new input; its size and modification time stand for its content
            with contextlib.suppress(OSError, ValueError):
                if v.startswith("/") and os.path.isfile(v):
                    st = os.stat(v)
                    h.update(f"file {k} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Hit:
    path: Path
    created: float
    age: float


class TreeCache:
    """Saved trees under ``<image cache>/dibpy-trees``; see the module docstring."""

    def __init__(self, cache_dir: Path, max_age: int = DEFAULT_MAX_AGE) -> None:
        self.dir = cache_dir / "dibpy-trees"
        self.max_age = max_age
        self._saver: threading.Thread | None = None
        self._save_error: BaseException | None = None

    def _entry(self, key: str) -> Path:
        return self.dir / f"{key}.tar.zst"

    def lookup(self, key: str) -> Hit | None:
        entry = self._entry(key)
        meta = entry.with_suffix(".json")
        if not entry.is_file() or not meta.is_file():
            return None
        created = float(json.loads(meta.read_text()).get("created", 0))
        age = time.time() - created
        if self.max_age <= 0:
            LOG.info("tree cache: reuse switched off (DIB_TREE_CACHE_MAX_AGE=0)")
            return None
        if age > self.max_age:
            LOG.info(
                "tree cache: entry %s is %s old, older than the %s allowed: rebuilding",
                key[:12],
                human_age(age),
                human_age(self.max_age),
            )
            return None
        return Hit(entry, created, age)

    def restore(self, hit: Hit, target: Path) -> None:
        run.run(
            [
                "tar",
                "--zstd",
                "-x",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "-p",
                "-f",
                str(hit.path),
                "-C",
                str(target),
            ]
        )

    def save_in_background(self, key: str, tree: Path, describe: Mapping[str, object]) -> None:
        """Start saving ``tree``; :meth:`wait` must be called before the tree changes."""
        self.dir.mkdir(parents=True, exist_ok=True)

        def _save() -> None:
            entry = self._entry(key)
            tmp = entry.with_name(f".{entry.name}.{os.getpid()}.partial")
            try:
                run.run(
                    [
                        "tar",
                        "-I",
                        "zstd -1 -T0",
                        "-c",
                        "--numeric-owner",
                        "--xattrs",
                        "--xattrs-include=*",
                        "--acls",
                        "--one-file-system",
                        "-f",
                        str(tmp),
                        "-C",
                        str(tree),
                        ".",
                    ],
                    quiet=True,
                )
                meta = {"created": time.time(), "key": key, **describe}
                entry.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
                os.replace(tmp, entry)
                self._prune(str(describe.get("elements", "")))
            except BaseException as e:  # reported by wait()
                self._save_error = e
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

        self._saver = threading.Thread(target=_save, name="dibpy-tree-cache", daemon=True)
        self._saver.start()

    def wait(self) -> None:
        if self._saver is not None:
            self._saver.join()
            self._saver = None
        if self._save_error is not None:
            LOG.warning("tree cache: could not save the tree: %s", self._save_error)
            self._save_error = None

    def _prune(self, element_set: str) -> None:
        metas = []
        for m in self.dir.glob("*.json"):
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(m.read_text())
                if str(data.get("elements", "")) == element_set:
                    metas.append((float(data.get("created", 0)), m))
        for _, m in sorted(metas, reverse=True)[KEEP_PER_SET:]:
            with contextlib.suppress(FileNotFoundError):
                m.with_suffix(".zst").unlink()
                m.unlink()


def human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def have_tools() -> bool:
    return shutil.which("zstd") is not None and shutil.which("tar") is not None
