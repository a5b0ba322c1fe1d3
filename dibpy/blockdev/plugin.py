"""What a block-device plugin is, and how plugins are found.

A plugin is a :class:`Node` subclass registered under the stevedore entry-point group
``dibpy.block_device.plugin`` with the key users write in YAML (``mkfs``, ...); plugins
written for diskimage-builder, in its group ``diskimage_builder.block_device.plugin``,
are found too and run through :mod:`dibpy.blockdev.dibcompat`::

    [options.entry_points]
    dibpy.block_device.plugin =
        my_thing = my_package.blockdev:MyThing

The class carries a JSON schema for its YAML mapping (built-ins ship theirs as
``dibpy/blockdev/schemas/<key>.json``; override :meth:`Node.schema`), may expand one
config entry into several graph nodes (:meth:`Node.from_config`), checks its config
against the whole graph (:meth:`Node.validate`), and makes its resources in
:meth:`Node.create`, registering each one through :meth:`CreateContext.acquire` the
moment it exists.  Releasing is done from the journal entry alone (see
:func:`dibpy.blockdev.resources.releaser`), so a later process can tear it down.

The manager is built lazily and strictly: a plugin that fails to load, a duplicate key,
or a class that is not a Node is an error.  Built-in plugins are always available, also
from a checkout that is not pip-installed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources as importlib_resources
from typing import Any, ClassVar

from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.state import Journal
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


@dataclass
class RawNode:
    """One config entry after tree flattening: its plugin, own keys and YAML path."""

    plugin: str
    name: str
    config: dict[str, Any]
    path: str


class ValidationContext:
    def __init__(self, nodes: Mapping[str, Node], params: BlockDeviceParams) -> None:
        self.nodes = nodes
        self.params = params
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        """Something diskimage-builder accepts but that is probably a mistake."""
        self.warnings.append(f"{path}: {message}")


class CreateContext:
    """What a node's create() gets: the journal and its own ExitStack.

    The stack belongs to the node being created; once its create() returns, the caller
    moves it onto the build's stack (``pop_all``), so a node that fails half-way undoes
    its own partial work, and a later failure undoes this node too.
    """

    def __init__(
        self,
        journal: Journal,
        stack: ExitStack,
        nodes: Mapping[str, Node],
        params: BlockDeviceParams,
    ) -> None:
        self.journal = journal
        self.stack = stack
        self.nodes = nodes
        self.params = params

    def acquire(self, kind: str, node: str, **data: Any) -> dict[str, Any]:
        """Journal a resource that now exists and push its release onto the stack."""
        entry = self.journal.add(kind, node, **data)
        self.stack.callback(self.journal.release_quietly, entry)
        return entry

    def values(self, node: str) -> dict[str, Any]:
        return self.journal.values(node)

    def publish(self, node: str, **values: Any) -> None:
        self.journal.set_values(node, **values)


class Node:
    """One vertex of the block-device graph (and, as a class, one plugin)."""

    #: the YAML key; set from the entry-point name when loaded
    plugin: ClassVar[str] = ""
    #: what this node gives its children: blockdev, table, filesystem, mount, fstab, lvm
    kind: ClassVar[str] = "blockdev"
    #: kinds this node's ``base`` may be (empty: it takes no base)
    base_kinds: ClassVar[tuple[str, ...]] = ("blockdev",)
    #: whether ``base`` is required
    needs_base: ClassVar[bool] = True

    def __init__(
        self, name: str, config: dict[str, Any], path: str, params: BlockDeviceParams
    ) -> None:
        self.name = name
        self.config = config
        self.path = path
        self.params = params
        #: position in the config (file order), for reporting the later of two clashes
        self.seq = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @classmethod
    def schema(cls) -> dict[str, Any]:
        ref = importlib_resources.files("dibpy.blockdev") / "schemas" / f"{cls.plugin}.json"
        data: dict[str, Any] = json.loads(ref.read_text())
        return data

    @classmethod
    def from_config(cls, raw: RawNode, params: BlockDeviceParams) -> list[Node]:
        return [cls(raw.name, raw.config, raw.path, params)]

    @property
    def bases(self) -> list[str]:
        """Nodes this one is built on (checked against ``base_kinds``)."""
        base = self.config.get("base")
        if base is None:
            return []
        return [base] if isinstance(base, str) else list(base)

    def after(self, nodes: Mapping[str, Node]) -> list[str]:
        """Extra ordering-only edges (e.g. the previous partition, the parent mount)."""
        return []

    def before(self, nodes: Mapping[str, Node]) -> list[str]:
        """Nodes that must come after this one (diskimage-builder's ``edges_to``)."""
        return []

    def size_bytes(self) -> int | None:
        """The size of the block device this node makes, if known before creating it."""
        return None

    def validate(self, ctx: ValidationContext) -> None:
        """Check this node against the graph; report through ``ctx.problem``."""

    def host_problems(self) -> list[str]:
        """What this host lacks for create() (checked before anything is made)."""
        return []

    def create(self, ctx: CreateContext) -> None:
        raise NotImplementedError


# -- the plugin manager --------------------------------------------------------------

_override: dict[str, type[Node]] | None = None
_cache: dict[str, type[Node]] | None = None


def _load_builtin(key: str) -> type[Node]:
    module, _, attr = BUILTINS[key].partition(":")
    cls: type[Node] = getattr(importlib.import_module(module), attr)
    return cls


def _classes_from_manager(mgr: Any) -> dict[str, type[Node]]:
    from dibpy.blockdev import dibcompat

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
    from dibpy.blockdev.dibcompat import DIB_GROUP

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
