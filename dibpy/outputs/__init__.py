"""Output formats: one plugin per format in the ``dibpy.output`` stevedore group.

Every plugin turns the build's one raw image (or, for tree formats, the mounted final
filesystem) into its format at a temporary path and checks the result; the output is
renamed into place only when the check passed, so a failed or interrupted build never
leaves a half-written output file.  :func:`write_all` does that for several outputs at
once, in parallel threads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
import tarfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from dibpy.errors import ConfigError, DibpyError, MultiError

LOG = logging.getLogger("dibpy")
GROUP = "dibpy.output"
MIB = 1024 * 1024


@dataclass(frozen=True)
class OutputOptions:
    #: -u: no qcow2 compression
    uncompressed: bool = False
    #: --qemu-img-options / DIB_QEMU_IMG_OPTIONS: ``[OUTPUT:]key=value,...``
    qemu_img_options: str = ""
    #: the build's environment: per-format variables (DIB_QCOW2_COMPAT, DIB_VMMGR_*, ...)
    environ: Mapping[str, str] = field(default_factory=dict)
    #: the image's base name (no directory, no extension): names the disk inside an OVA,
    #: a VM-manager template, a docker tag
    image_name: str = ""
    #: --docker-target: REPOSITORY[:TAG] of a docker output
    docker_target: str = ""
    #: the build's architecture (ARCH): amd64, arm64, x86_64, ...
    arch: str = "amd64"


class OutputPlugin:
    """Base class of an output format.  One instance writes one output."""

    name: ClassVar[str] = ""
    #: file name suffix of the output (without the dot)
    extension: ClassVar[str] = ""
    #: True for formats made from the file tree (tar, squashfs, ...): the build calls
    #: write_tree() while the final filesystem is still mounted, instead of write()
    needs_tree: ClassVar[bool] = False
    #: host programs the format needs (checked before the build starts)
    programs: ClassVar[tuple[str, ...]] = ()
    #: True for outputs of several files that name each other (a split VMDK, a .vmx and
    #: its disk): written under their final names in a temporary directory, then each
    #: renamed into place (:mod:`dibpy.outputs.fileset`)
    file_set: ClassVar[bool] = False

    def write(self, raw: Path, dest: Path, opts: OutputOptions) -> None:
        raise NotImplementedError

    def write_tree(self, root: Path, dest: Path, opts: OutputOptions) -> None:
        raise NotImplementedError

    def check(self, dest: Path) -> None:
        """Raise a DibpyError if ``dest`` is not a valid file of this format.

        After :meth:`write`, the plugin also knows what it wrote (virtual size, options)
        and checks those; called on its own (``dibpy convert``) it checks the structure.
        """

    def finish(self, dest: Path, opts: OutputOptions) -> list[Path]:
        """Called once ``dest`` is in place: write companion files, return their paths."""
        return []

    def validate(self, opts: OutputOptions) -> None:
        """Raise ConfigError if the options cannot work for this format (before building)."""


@functools.cache
def _manager() -> Any:
    from stevedore import ExtensionManager

    def _fail(_m: object, ep: object, exc: BaseException) -> None:
        raise ConfigError(f"output plugin {getattr(ep, 'name', ep)!r} failed to load: {exc}")

    return ExtensionManager(GROUP, invoke_on_load=False, on_load_failure_callback=_fail)


def _builtin() -> dict[str, type[OutputPlugin]]:
    from dibpy.outputs.ova import Ova
    from dibpy.outputs.qemu import Qcow2, Raw, Vhd, Vhdx, Vmdk
    from dibpy.outputs.tree import Docker, Squashfs, Tar, Tgz
    from dibpy.outputs.vmmgr import VmManager
    from dibpy.outputs.vmware import Vmware

    table: list[type[OutputPlugin]] = [
        Raw,
        Qcow2,
        Vhd,
        Vhdx,
        Vmdk,
        Ova,
        Vmware,
        Tar,
        Tgz,
        Squashfs,
        Docker,
        VmManager,
    ]
    return {p.name: p for p in table}


def available() -> dict[str, type[OutputPlugin]]:
    plugins = dict(_builtin())
    for ext in _manager().extensions:
        plugins[ext.name] = ext.plugin
    return plugins


@functools.cache
def qemu_img_formats() -> frozenset[str]:
    """The formats this host's qemu-img writes (its --help lists them)."""
    import shutil
    import subprocess

    exe = shutil.which("qemu-img")
    if exe is None:
        return frozenset()
    text = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"Supported formats:(.*)", text)
    return frozenset(m.group(1).split()) if m else frozenset()


#: disk-image formats qemu-img can write beyond those with a plugin of their own (its
#: other "formats" are protocols and filters; qcow, version 1, is left out: it is far
#: likelier a mistyped qcow2)
GENERIC_QEMU_FORMATS = frozenset({"qed", "vdi", "parallels", "vpc"})


def generic_qemu_output(fmt: str) -> OutputPlugin:
    """diskimage-builder converts any other -t with ``qemu-img convert -O TYPE``."""
    from dibpy.outputs.qemu import QemuOutput

    class Generic(QemuOutput):
        name = fmt
        extension = fmt
        qemu_format = fmt

    return Generic()


def get(name: str) -> OutputPlugin:
    plugins = available()
    if name not in plugins and name in GENERIC_QEMU_FORMATS & qemu_img_formats():
        return generic_qemu_output(name)
    if name not in plugins:
        from dibpy.elements.resolve import did_you_mean

        hint = did_you_mean(name, plugins) or f"available: {', '.join(sorted(plugins))}"
        raise ConfigError(f"-t {name}: unknown output type", hint=hint)
    return plugins[name]()


def validate(plugins: Sequence[OutputPlugin], opts: OutputOptions) -> None:
    """Check the options of every requested output; every problem at once (MultiError).

    The build calls this while planning, before any resource exists.
    """
    from dibpy.outputs import options
    from dibpy.run import which

    problems: list[str] = []
    hints: list[str] = []
    try:
        options.validate(
            [p.name for p in plugins],
            opts.qemu_img_options,
            opts.environ,
            uncompressed=opts.uncompressed,
        )
    except MultiError as e:
        problems += e.problems
        hints += [e.hint] if e.hint else []
    names = {p.name for p in plugins}
    if {"vmdk", "vmware"} <= names:
        problems.append("-t vmdk and -t vmware both write NAME.vmdk")
        hints.append("-t vmware alone writes the .vmdk beside the .vmx")
    for p in plugins:
        try:
            p.validate(opts)
        except ConfigError as e:
            problems += e.problems if isinstance(e, MultiError) else [e.message]
            hints += [e.hint] if e.hint else []
        missing = [prog for prog in p.programs if which(prog) is None]
        if missing:
            problems.append(f"-t {p.name} needs {', '.join(missing)}, which is not installed")
            hints.append("install the host packages listed in doc/outputs.md")
    if problems:
        # a plugin's own validate() may repeat what options.validate() found: once each
        parts = [h for hint in hints for h in hint.split("; ")]
        raise MultiError(list(dict.fromkeys(problems)), "; ".join(dict.fromkeys(parts)) or None)


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


def open_tar(path: Path, mode: Literal["r:", "r:*", "r:gz"], what: str) -> tarfile.TarFile:
    """Open a tar archive for reading; an unreadable one is a DibpyError naming ``what``.

    The caller owns the returned TarFile and closes it (``with open_tar(...) as tar``).
    """
    try:
        return tarfile.open(path, mode)  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DibpyError(f"{what} {path} is not a readable tar archive: {e}") from None
