"""The block-device plugin registry: which class implements each YAML key.

The manager is built lazily and strictly: a plugin that fails to load, a duplicate key,
or a class that is not a :class:`~dibpy.blockdev.plugin.Node` is an error, and an entry
point may not replace a built-in key.  Built-in plugins are always available, also from
a checkout that is not pip-installed.  Plugins written for diskimage-builder (its group
``diskimage_builder.block_device.plugin``) are wrapped by :mod:`dibpy.blockdev.dibcompat`.

This sits above both :mod:`dibpy.blockdev.plugin` (the base class) and ``dibcompat``
(which extends it), so neither imports the other back.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from dibpy.blockdev import dibcompat
from dibpy.blockdev.plugin import Node
from dibpy.errors import ConfigError
from dibpy.log import LOG

GROUP = "dibpy.block_device.plugin"

BUILTINS: dict[str, str] = {
    "local_loop": "dibpy.blockdev.plugins.local_loop:LocalLoop",
    "partitioning": "dibpy.blockdev.plugins.partitioning:Partitioning",
    "lvm": "dibpy.blockdev.plugins.lvm:Lvm",
    "mkfs": "dibpy.blockdev.plugins.mkfs:Mkfs",
    "mount": "dibpy.blockdev.plugins.mount:Mount",
    "fstab": "dibpy.blockdev.plugins.fstab:Fstab",
}


# -- the plugin manager --------------------------------------------------------------

_override: dict[str, type[Node]] | None = None
_cache: dict[str, type[Node]] | None = None


def _load_builtin(key: str) -> type[Node]:
    module, _, attr = BUILTINS[key].partition(":")
    cls: type[Node] = getattr(importlib.import_module(module), attr)
    return cls


def _classes_from_manager(mgr: Any) -> dict[str, type[Node]]:
    found: dict[str, type[Node]] = {}
    for ext in mgr.extensions:
        cls = ext.plugin
        if dibcompat.is_dib_plugin(cls):
            cls = dibcompat.wrap(ext.name, cls)
        if ext.name in found and found[ext.name] is not cls:
            raise ConfigError(
                f"block-device plugin {ext.name!r} is registered twice in {GROUP}",
                hint="uninstall one of the packages that declare it",
            )
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise ConfigError(
                f"block-device plugin {ext.name!r} ({cls!r}) is not a "
                "dibpy.blockdev.plugin.Node subclass",
                hint=f"fix the {GROUP} entry point that declares it",
            )
        found[ext.name] = cls
    return found


def _build() -> dict[str, type[Node]]:
    from stevedore import ExtensionManager

    def _fail(_mgr: object, ep: object, exc: BaseException) -> None:
        raise ConfigError(
            f"block-device plugin {getattr(ep, 'name', ep)!r} failed to load: {exc}",
            hint=f"fix or uninstall the package that declares it in {GROUP}",
        ) from exc

    mgr: ExtensionManager[Any] = ExtensionManager(
        GROUP, invoke_on_load=False, on_load_failure_callback=_fail
    )
    found = _classes_from_manager(mgr)
    # plugins written for diskimage-builder, in its group; its own implementations of
    # our built-in keys (when diskimage-builder is installed too) are not used
    DIB_GROUP = dibcompat.DIB_GROUP
    dib_mgr: ExtensionManager[Any] = ExtensionManager(
        DIB_GROUP, invoke_on_load=False, on_load_failure_callback=_fail
    )
    for ext in list(dib_mgr.extensions):
        if ext.name in BUILTINS:
            dib_mgr.extensions.remove(ext)
    for key, cls in _classes_from_manager(dib_mgr).items():
        if key in found and found[key] is not cls:
            raise ConfigError(
                f"block-device plugin {key!r} is registered in both {GROUP} and {DIB_GROUP}",
                hint="uninstall one of the packages that declare it",
            )
        found[key] = cls
    for key in BUILTINS:
        builtin = _load_builtin(key)
        if key not in found:
            LOG.debug("block-device plugin %s: built in (dibpy is not installed)", key)
            found[key] = builtin
        elif found[key] is not builtin:
            raise ConfigError(
                f"block-device plugin {key!r} is registered by a third party too "
                f"({found[key].__module__}.{found[key].__name__})",
                hint="a plugin may not replace a built-in one; pick another key",
            )
    return found


def plugins() -> dict[str, type[Node]]:
    """Plugin key -> class, loaded on first use."""
    global _cache
    if _override is not None:
        classes = _override
    else:
        if _cache is None:
            _cache = _build()
        classes = _cache
    for key, cls in classes.items():
        if not cls.plugin:
            cls.plugin = key
    return classes


@contextlib.contextmanager
def use_manager(mgr: Any) -> Iterator[None]:
    """Use a stevedore manager (e.g. ``ExtensionManager.make_test_instance``) instead."""
    global _override
    prev = _override
    _override = _classes_from_manager(mgr)
    try:
        yield
    finally:
        _override = prev


def test_manager(extra: Mapping[str, type[Node]] | None = None) -> Any:
    """A stevedore test manager with the built-ins plus ``extra`` (for tests)."""
    from stevedore import ExtensionManager
    from stevedore.extension import Extension

    exts: list[Extension[Any]] = []
    for key, cls in [*((k, _load_builtin(k)) for k in BUILTINS), *(extra or {}).items()]:
        exts.append(Extension(key, None, cls, None))  # type: ignore[arg-type]
    return ExtensionManager.make_test_instance(exts)


test_manager.__test__ = False  # type: ignore[attr-defined]
