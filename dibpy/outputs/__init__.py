"""Output formats: one plugin per format in the ``dibpy.output`` stevedore group.

Every plugin turns the build's one raw image (or, for tree formats, the mounted final
filesystem) into its format at a temporary path and checks the result; the output is
renamed into place only when the check passed, so a failed or interrupted build never
leaves a half-written output file (:mod:`dibpy.outputs.write`).

The plugin base class and its options live in :mod:`dibpy.outputs.base`, which the
plugins import; this package holds the registry (:func:`available`, :func:`get`) and
the checks of a requested set of outputs (:func:`validate`).  The registry is strict,
as the block-device one is: a plugin that fails to load, a name registered twice, a
class that is not an :class:`OutputPlugin`, or an entry point that would replace a
built-in format is an error naming both.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from dibpy.errors import ConfigError, MultiError, did_you_mean
from dibpy.outputs.base import MIB, OutputOptions, OutputPlugin, open_tar
from dibpy.outputs.write import partial_path, write_all, write_one

__all__ = [
    "BUILTINS",
    "GROUP",
    "MIB",
    "OutputOptions",
    "OutputPlugin",
    "available",
    "get",
    "open_tar",
    "partial_path",
    "validate",
    "write_all",
    "write_one",
]

GROUP = "dibpy.output"

#: the formats dibpy ships: name -> "module:Class" (setup.cfg declares the same)
BUILTINS: dict[str, str] = {
    "raw": "dibpy.outputs.qemu:Raw",
    "qcow2": "dibpy.outputs.qemu:Qcow2",
    "vhd": "dibpy.outputs.qemu:Vhd",
    "vhdx": "dibpy.outputs.qemu:Vhdx",
    "vmdk": "dibpy.outputs.qemu:Vmdk",
    "ova": "dibpy.outputs.ova:Ova",
    "vmware": "dibpy.outputs.vmware:Vmware",
    "tar": "dibpy.outputs.tree:Tar",
    "tgz": "dibpy.outputs.tree:Tgz",
    "squashfs": "dibpy.outputs.tree:Squashfs",
    "docker": "dibpy.outputs.tree:Docker",
    "vmmgr": "dibpy.outputs.vmmgr:VmManager",
}

_override: dict[str, type[OutputPlugin]] | None = None


def _load_builtin(name: str) -> type[OutputPlugin]:
    module, _, attr = BUILTINS[name].partition(":")
    cls: type[OutputPlugin] = getattr(importlib.import_module(module), attr)
    return cls


def _described(cls: object) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)}"


def _classes_from_manager(mgr: Any) -> dict[str, type[OutputPlugin]]:
    found: dict[str, type[OutputPlugin]] = {}
    for ext in mgr.extensions:
        cls = ext.plugin
        if ext.name in found and found[ext.name] is not cls:
            raise ConfigError(
                f"output plugin {ext.name!r} is registered twice in {GROUP}: "
                f"{_described(found[ext.name])} and {_described(cls)}",
                hint="uninstall one of the packages that declare it",
            )
        if not (isinstance(cls, type) and issubclass(cls, OutputPlugin)):
            raise ConfigError(
                f"output plugin {ext.name!r} ({cls!r}) is not a "
                "dibpy.outputs.base.OutputPlugin subclass",
                hint=f"fix the {GROUP} entry point that declares it",
            )
        found[ext.name] = cls
    return found


def _with_builtins(found: dict[str, type[OutputPlugin]]) -> dict[str, type[OutputPlugin]]:
    for name in BUILTINS:
        builtin = _load_builtin(name)
        if name not in found:
            # a checkout that is not pip-installed has no entry points
            found[name] = builtin
        elif found[name] is not builtin:
            raise ConfigError(
                f"output plugin {name!r} is registered by a third party too "
                f"({_described(found[name])}) and would replace the built-in "
                f"{_described(builtin)}",
                hint="a plugin may not replace a built-in output format; pick another name",
            )
    return found


@functools.cache
def _from_entry_points() -> dict[str, type[OutputPlugin]]:
    from stevedore import ExtensionManager

    def _fail(_m: object, ep: object, exc: BaseException) -> None:
        raise ConfigError(
            f"output plugin {getattr(ep, 'name', ep)!r} failed to load: {exc}",
            hint=f"fix or uninstall the package that declares it in {GROUP}",
        ) from exc

    mgr: ExtensionManager[Any] = ExtensionManager(
        GROUP, invoke_on_load=False, on_load_failure_callback=_fail
    )
    return _with_builtins(_classes_from_manager(mgr))


def available() -> dict[str, type[OutputPlugin]]:
    """Output name -> plugin class: the built-ins and every ``dibpy.output`` entry point
    (loaded on first use)."""
    return dict(_override if _override is not None else _from_entry_points())


@contextlib.contextmanager
def use_manager(mgr: Any) -> Iterator[None]:
    """Use a stevedore manager (e.g. ``ExtensionManager.make_test_instance``) instead of
    the installed entry points, with the same checks."""
    global _override
    prev = _override
    _override = _with_builtins(_classes_from_manager(mgr))
    try:
        yield
    finally:
        _override = prev


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
