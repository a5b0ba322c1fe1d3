"""What a block-device plugin is (how they are found: :mod:`dibpy.blockdev.registry`).

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

"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources as importlib_resources
from typing import Any, ClassVar

from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.state import Journal


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
