"""Block-device plugins written for diskimage-builder, run by dibpy.

diskimage-builder finds plugins in the entry-point group
``diskimage_builder.block_device.plugin``; a plugin is a class built as
``cls(config, defaults, state)`` whose ``get_nodes()`` gives node objects with
``name``, ``get_edges()`` (nodes before it, nodes after it), ``create()``,
``rollback()``, ``umount()`` and ``cleanup()``.  :func:`wrap` turns such a class into a
dibpy :class:`~dibpy.blockdev.plugin.Node` class, so third-party plugins installed for
diskimage-builder work unchanged.  The built-in keys (``mkfs``, ...) are always dibpy's.

All the diskimage-builder plugins of one config share one ``state`` dict, as they do in
diskimage-builder; before a node's ``create()`` its ``state['blockdev']`` holds every
block device dibpy has made so far (``{'device': ..., 'image': ...}``), and afterwards
the devices it added there are published for the nodes built on it.  Ownership: the
build's stack gets the node's teardown once its ``create()`` returns: ``rollback()``
if the stack unwinds because of an error (as diskimage-builder rolls back every created
node, last first), else ``umount()`` and ``cleanup()``; a failed ``create()`` runs the
node's own ``rollback()`` first.  These
resources are not journalled, so ``dib-block-device cleanup`` in another process cannot
release them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any, ClassVar

from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.plugin import CreateContext, Node, RawNode
from dibpy.errors import ConfigError
from dibpy.log import LOG

DIB_GROUP = "diskimage_builder.block_device.plugin"

_state: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "dib_plugin_state", default=None
)


def new_state() -> dict[str, Any]:
    """Start the state dict shared by the diskimage-builder plugins of one config.

    ``load_config`` calls this before it builds any node; each wrapped node keeps a
    reference to the dict it was built with, so a later config gets its own.
    """
    state: dict[str, Any] = {}
    _state.set(state)
    return state


def dib_defaults(params: BlockDeviceParams) -> dict[str, Any]:
    """diskimage-builder's params mapping (``--params``) for these params."""
    out: dict[str, Any] = {
        "image-dir": str(params.image_dir),
        "mount-base": str(params.mount_base),
        "build-dir": str(params.build_dir),
        "root-fs-type": params.root_fs_type,
        "root-label": params.root_label,
    }
    if params.image_size is not None:
        out["image-size"] = f"{params.image_size // 1024}KiB"
    return out


class DibPluginNode(Node):
    """One node of a diskimage-builder plugin."""

    kind: ClassVar[str] = "blockdev"
    base_kinds: ClassVar[tuple[str, ...]] = ()
    needs_base: ClassVar[bool] = False
    dib_class: ClassVar[Any] = None

    obj: Any = None
    state: dict[str, Any]

    @classmethod
    def schema(cls) -> dict[str, Any]:
        # diskimage-builder plugins check their own config
        return {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}}

    @classmethod
    def from_config(cls, raw: RawNode, params: BlockDeviceParams) -> list[Node]:
        state = _state.get()
        if state is None:
            state = {}
        try:
            plugin = cls.dib_class(dict(raw.config), dib_defaults(params), state)
            dib_nodes = list(plugin.get_nodes())
        except Exception as e:  # a third party's own config check
            raise ConfigError(f"{raw.path}: {e}") from None
        out: list[Node] = []
        for dib_node in dib_nodes:
            node = cls(str(dib_node.name), raw.config, raw.path, params)
            node.obj = dib_node
            node.state = state
            out.append(node)
        return out

    def _edges(self) -> tuple[list[str], list[str]]:
        before, after = self.obj.get_edges()
        return [str(n) for n in before], [str(n) for n in after]

    @property
    def bases(self) -> list[str]:
        return self._edges()[0]

    def before(self, nodes: Mapping[str, Node]) -> list[str]:
        return self._edges()[1]

    def create(self, ctx: CreateContext) -> None:
        blockdev = self.state.setdefault("blockdev", {})
        for name in ctx.nodes:
            values = ctx.values(name)
            if values.get("device") and name not in blockdev:
                entry = {"device": values["device"]}
                if values.get("file"):
                    entry["image"] = values["file"]
                blockdev[name] = entry
        known = {k: dict(v) for k, v in blockdev.items()}
        try:
            self.obj.create()
        except Exception:
            self.obj.rollback()
            raise
        ctx.stack.push(self._unwind)
        for name, entry in blockdev.items():
            if known.get(name) != entry and isinstance(entry, dict) and entry.get("device"):
                ctx.publish(name, device=entry["device"], file=entry.get("image"))

    def _unwind(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        # a failure later in the build: diskimage-builder's rollback; else its teardown
        if exc_type is not None:
            try:
                self.obj.rollback()
            except Exception as e:  # noqa: BLE001 - the rollback must not hide the cause
                LOG.error("cleanup: the rollback of %s failed: %s", type(self.obj).__name__, e)
        else:
            self.obj.umount()
            self.obj.cleanup()
        return False


def wrap(key: str, dib_class: Any) -> type[Node]:
    """A dibpy Node class for the diskimage-builder plugin ``dib_class``."""
    return type(
        f"Dib_{key}",
        (DibPluginNode,),
        {"dib_class": dib_class, "plugin": key, "__module__": __name__},
    )


def is_dib_plugin(cls: Any) -> bool:
    """Whether ``cls`` looks like a diskimage-builder PluginBase subclass."""
    return isinstance(cls, type) and any(
        c.__name__ == "PluginBase" and c.__module__.startswith("diskimage_builder.")
        for c in cls.__mro__
    )
