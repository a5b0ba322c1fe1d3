"""The tree as a stack of overlayfs layers, one per tree cache checkpoint.

With layers, a checkpoint costs an unmount and a mount, not a copy of the tree: the tree
(``built/``) is an overlay whose upper directory collects what the phases since the last
checkpoint changed (new and changed files, whiteouts for removed ones, opaque directories
for replaced ones).  At a checkpoint the overlay is unmounted, its upper directory is
*sealed* (handed to the tree cache, which keeps it as that checkpoint's entry) and pushed
onto the lower layers, and a fresh overlay with an empty upper directory is mounted for
the next phases.  A restore mounts the cached layers as the lower layers: nothing is
copied or unpacked.

Who owns what: a :class:`LayeredTree` owns the overlay mounted at ``built`` (pushed onto
the caller's ExitStack when mounted) and the upper directories it made under ``root`` (the
build directory's ``layers/``), which go with the build directory; the lower layers that
live in the tree cache belong to the cache, which keeps them (a shared lock each) until
the build ends.

Layers need an overlayfs that takes the cache's filesystem as a lower layer and the build
directory's as an upper one; :func:`overlay_unusable` tries exactly that, and the tree
cache falls back to tarballs when it fails (doc/building.md, "Checkpoints").
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dibpy import mounts, run
from dibpy.errors import DibpyError

LOG = logging.getLogger("dibpy")

#: the characters overlayfs' mount options cannot take in a layer's path
_UNSAFE = (",", ":", "\\", "\n")
#: the options every overlay of the tree is mounted with: no feature that ties a layer to
#: the overlay it was written in (an index, redirects, metadata-only copy-ups), so a
#: sealed upper directory is a self-contained layer under any later stack; and volatile:
#: no sync reaches the upper layer's filesystem (a build's tree never needed one, on
#: tmpfs it was free, and with the upper beside the cache on a disk dpkg's fsync of
#: every file it unpacks made mmdebstrap 25 % slower, and each unmount synced the disk)
_FEATURES = ("index=off", "redirect_dir=off", "metacopy=off", "xino=off", "volatile")


def overlay_options(lowers: Sequence[Path], upper: Path, work: Path) -> str:
    """The mount options of an overlay of ``lowers`` (bottom first) under ``upper``."""
    for p in (*lowers, upper, work):
        if any(c in str(p) for c in _UNSAFE):
            raise DibpyError(
                f"cannot use {p} as an overlay layer: its path holds one of , : \\",
                hint="set DIB_TREE_CACHE_LAYERS=0, or use a DIB_IMAGE_CACHE/TMP_DIR "
                "without those characters",
            )
    # overlayfs lists the topmost lower layer first
    lower = ":".join(str(p) for p in reversed(lowers))
    return ",".join([f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}", *_FEATURES])


def overlay_unusable(lower_parent: Path, upper_parent: Path) -> str | None:
    """Why the tree cannot be layered with lower layers in ``lower_parent`` and upper
    directories in ``upper_parent``, or None: mounts a throwaway overlay there, removes a
    lower file (a whiteout), seals the upper and checks that the file stays removed when
    the sealed layer is stacked on the first."""
    try:
        lower_parent.mkdir(parents=True, exist_ok=True)
        upper_parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            low = Path(tempfile.mkdtemp(prefix=".overlay-probe.", dir=lower_parent))
            stack.callback(shutil.rmtree, low, ignore_errors=True)
            high = Path(tempfile.mkdtemp(prefix=".overlay-probe.", dir=upper_parent))
            stack.callback(shutil.rmtree, high, ignore_errors=True)
            for d in ("lower", "upper", "work", "upper2", "work2", "tree"):
                (low if d == "lower" else high).joinpath(d).mkdir()
            (low / "lower" / "gone").write_text("x")
            tree = high / "tree"
            opts = overlay_options([low / "lower"], high / "upper", high / "work")
            run.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(tree)], quiet=True)
            try:
                (tree / "gone").unlink()
                (tree / "new").write_text("y")
            finally:
                mounts.umount(tree, "the overlay probe", tries=3, kill_busy=False)
            opts = overlay_options([low / "lower", high / "upper"], high / "upper2", high / "work2")
            run.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(tree)], quiet=True)
            try:
                ok = not (tree / "gone").exists() and (tree / "new").read_text() == "y"
            finally:
                mounts.umount(tree, "the overlay probe", tries=3, kill_busy=False)
            return None if ok else "a removed file came back through the layers"
    except (DibpyError, OSError) as e:
        return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__


class LayeredTree:
    """The tree at ``built`` as an overlay of ``lowers`` (bottom first) and an upper
    directory under ``root``; see the module docstring."""

    def __init__(self, built: Path, root: Path, lowers: Sequence[Path] = ()) -> None:
        self.built = built
        self.root = root
        self.lowers: list[Path] = list(lowers)
        self.upper: Path | None = None
        self._count = 0

    def mount(self, stack: contextlib.ExitStack) -> None:
        """Mount the overlay at ``built`` with a fresh, empty upper directory; its unmount
        goes onto ``stack``."""
        self._count += 1
        layer = self.root / str(self._count)
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        lowers = self.lowers
        if not lowers:
            # overlayfs needs a lower layer: the first segment starts from an empty one
            empty = self.root / "empty"
            empty.mkdir(parents=True, exist_ok=True)
            lowers = [empty]
        opts = overlay_options(lowers, layer / "upper", layer / "work")
        mounts.mount(["-t", "overlay", "overlay", "-o", opts], self.built, stack, "the tree")
        self.upper = layer / "upper"

    def seal(self) -> Path:
        """Unmount the overlay and return its upper directory, now a finished layer; the
        caller pushes it (or the cache's copy of it) with :meth:`push` before mounting
        again."""
        assert self.upper is not None
        mounts.umount(self.built, "the tree")
        upper, self.upper = self.upper, None
        with contextlib.suppress(OSError):
            shutil.rmtree(upper.parent / "work")
        return upper

    def push(self, layer: Path) -> None:
        self.lowers.append(layer)

    def unmount(self) -> None:
        """Unmount the tree (its layers stay, for the cache to finish keeping them)."""
        if self.upper is not None:
            mounts.umount(self.built, "the tree")
            self.upper = None
