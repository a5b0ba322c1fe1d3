"""Writing outputs: each under a temporary name, checked, then renamed into place.

:func:`write_one` writes one output (a single file, or a set of files that name each
other); :func:`write_all` writes several from one source in parallel threads.  A failed
or interrupted write never leaves a half-written output: the temporary file or
directory is removed, and an existing output of the same name is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

from dibpy.errors import DibpyError, MultiError
from dibpy.outputs.base import OutputOptions, OutputPlugin

LOG = logging.getLogger("dibpy")


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.partial-{os.getpid()}")


def _unlink_quiet(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        p.unlink()


def write_one(
    plugin: OutputPlugin,
    source: Path,
    dest: Path,
    opts: OutputOptions,
    *,
    tree: bool = False,
    keep_old: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write ``dest`` from ``source`` under a temporary name, check it, rename it in place.

    Returns ``dest``, the other files of its set (a split VMDK's extents) and any
    companion files.  On failure the temporary file (or directory) is removed and
    ``dest`` (if it existed) is untouched.  ``keep_old(dest)`` runs just before the
    rename; without it an existing set is replaced as a whole (no stale extent is left).
    """
    if plugin.file_set:
        return _write_set(plugin, source, dest, opts, tree=tree, keep_old=keep_old)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(dest)
    try:
        LOG.info("writing %s output %s", plugin.name, dest)
        if tree:
            plugin.write_tree(source, partial, opts)
        else:
            plugin.write(source, partial, opts)
        plugin.check(partial)
        if keep_old is not None:
            keep_old(dest)
        os.replace(partial, dest)
    except DibpyError as e:
        _rename_in_message(e, partial, dest)
        raise
    finally:
        _unlink_quiet(partial)
    return [dest, *plugin.finish(dest, opts)]


def _rename_in_message(e: DibpyError, partial: Path, dest: Path) -> None:
    # name the output the user asked for, not its temporary name
    e.message = e.message.replace(str(partial), str(dest)).replace(partial.name, dest.name)
    e.args = (e.message,)


def _write_set(
    plugin: OutputPlugin,
    source: Path,
    dest: Path,
    opts: OutputOptions,
    *,
    tree: bool,
    keep_old: Callable[[Path], None] | None,
) -> list[Path]:
    """:func:`write_one` for a set of files: written as ``dest``'s name inside the
    temporary directory ``.NAME.partial-PID``, checked there, then placed file by file."""
    import shutil

    from dibpy.outputs import fileset

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = partial_path(dest)
    staged = tmpdir / dest.name
    try:
        LOG.info("writing %s output %s", plugin.name, dest)
        tmpdir.mkdir()
        if tree:
            plugin.write_tree(source, staged, opts)
        else:
            plugin.write(source, staged, opts)
        plugin.check(staged)
        files = fileset.members(staged)
        extra = {f.name for f in tmpdir.iterdir()} - {f.name for f in files}
        if extra:
            raise DibpyError(
                f"{plugin.name} output {dest}: wrote files its descriptor does not name: "
                + ", ".join(sorted(extra))
            )
        if keep_old is not None:
            keep_old(dest)
        old = fileset.members(dest)
        placed = fileset.place(files, dest.parent)
        # a replaced set with more extents than the new one leaves none behind
        for stale in old:
            if stale not in placed:
                _unlink_quiet(stale)
    except DibpyError as e:
        _rename_in_message(e, staged, dest)
        e.message = e.message.replace(str(tmpdir), str(dest.parent))
        e.args = (e.message,)
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return [*placed, *plugin.finish(dest, opts)]


def _kill_our_children() -> None:
    """Stop the programs our worker threads started (each leads its own process group)."""
    from dibpy.progress import _children

    for pid in _children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGTERM)


def write_all(
    todo: Sequence[tuple[OutputPlugin, Path]],
    source: Path,
    opts: OutputOptions,
    *,
    tree: bool = False,
    keep_old: Callable[[Path], None] | None = None,
    jobs: int | None = None,
) -> list[Path]:
    """Write every ``(plugin, dest)`` from one ``source``, in parallel threads.

    ``source`` is the raw image, or the mounted root when ``tree`` (then call it while the
    filesystem is mounted, with the tree plugins only).  Each output is written, checked
    and renamed into place by :func:`write_one`; ``keep_old(dest)`` runs just before the
    rename.  Returns every path written, in ``todo`` order (each output then its companion
    files).  If any output fails the others still finish (or are stopped on an
    interrupt), no partial file is left, and the failure is raised: the one error, or a
    MultiError naming each failed output.
    """
    if not todo:
        return []
    workers = jobs or min(len(todo), max(2, os.cpu_count() or 2))
    if workers <= 1 or len(todo) == 1:
        out: list[Path] = []
        for plugin, dest in todo:
            out += write_one(plugin, source, dest, opts, tree=tree, keep_old=keep_old)
        return out
    lock = threading.Lock()

    def _keep(dest: Path) -> None:
        if keep_old is not None:
            with lock:
                keep_old(dest)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dibpy-output")
    futures: list[Future[list[Path]]] = []
    try:
        for plugin, dest in todo:
            futures.append(
                pool.submit(write_one, plugin, source, dest, opts, tree=tree, keep_old=_keep)
            )
        wait(futures, return_when=FIRST_EXCEPTION)
        wait(futures)
    except BaseException:
        for f in futures:
            f.cancel()
        _kill_our_children()
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    errors: list[tuple[str, BaseException]] = []
    written: list[Path] = []
    for (plugin, _), f in zip(todo, futures, strict=True):
        exc = f.exception()
        if exc is not None:
            errors.append((plugin.name, exc))
        else:
            written += f.result()
    if len(errors) == 1:
        raise errors[0][1]
    if errors:
        for _, e in errors:
            if not isinstance(e, DibpyError):
                raise e
        raise MultiError(
            [f"-t {name}: {e}" for name, e in errors],
            hint="the other outputs were written",
        )
    return written
