"""``lvm``: physical volumes, volume groups and logical volumes (thin pools too).

Each pv, vg and lv is its own graph node, named by its ``name``; filesystems are built
on lvs.  This needs device-mapper: without ``/dev/mapper/control`` (containers, this
kind of CI host) validation with host checks fails with a message that says so.  LVM
runs without udev (``DM_DISABLE_UDEV=1``: LVM makes the device nodes itself).
Resources: each activated volume group (``vgchange -an`` at umount).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from dibpy import run
from dibpy.blockdev import resources
from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.plugin import CreateContext, Node, RawNode, ValidationContext
from dibpy.blockdev.units import parse_size
from dibpy.errors import ConfigError


def lv_device(vg: str, lv: str) -> str:
    return f"/dev/mapper/{vg.replace('-', '--')}-{lv.replace('-', '--')}"


class _LvmNode(Node):
    plugin: ClassVar[str] = "lvm"

    def host_problems(self) -> list[str]:
        why = resources.device_mapper_problem()
        if why:
            return [f"LVM needs device-mapper: {why}"]
        if run.which("lvm") is None:
            return ["LVM needs the lvm2 tools (lvm is not installed)"]
        return []


#: LVM's default extent size: diskimage-builder rounds sizes down to a multiple of it
PHYSICAL_EXTENT_BYTES = 4 * 1024 * 1024


class Pv(_LvmNode):
    """Placeholder in the graph: the ``lvm`` node makes every pv, vg and lv."""

    kind: ClassVar[str] = "pv"
    base_kinds: ClassVar[tuple[str, ...]] = ("blockdev",)
    needs_base: ClassVar[bool] = False  # its base is the lvm node's
    #: the lvm node this pv belongs to (set by Lvm.from_config)
    owner: str = ""

    @property
    def bases(self) -> list[str]:
        return []

    def after(self, nodes: Mapping[str, Node]) -> list[str]:
        return [self.owner]

    def argv(self, device: str) -> list[str]:
        return ["pvcreate", device, *self.config.get("options", [])]

    def create(self, ctx: CreateContext) -> None:
        """Made by the lvm node."""


class Vg(_LvmNode):
    kind: ClassVar[str] = "vg"
    base_kinds: ClassVar[tuple[str, ...]] = ("pv",)

    def argv(self, devices: list[str]) -> list[str]:
        return ["vgcreate", self.name, *devices, *self.config.get("options", [])]

    def create(self, ctx: CreateContext) -> None:
        """Made by the lvm node."""


class Lv(_LvmNode):
    kind: ClassVar[str] = "blockdev"
    base_kinds: ClassVar[tuple[str, ...]] = ("vg",)

    @property
    def lv_type(self) -> str:
        return str(self.config.get("type") or "")

    def validate(self, ctx: ValidationContext) -> None:
        has_size, has_ext = "size" in self.config, "extents" in self.config
        if not has_size and not has_ext:
            ctx.problem(self.path, "missing size or extents")
        if has_size:
            try:
                parse_size(self.config["size"])
            except ConfigError as e:
                ctx.problem(f"{self.path}.size", e.message)
        pool = self.config.get("thin-pool")
        if pool is not None:
            other = ctx.nodes.get(pool)
            if not isinstance(other, Lv) or other.lv_type != "thin-pool":
                ctx.problem(f"{self.path}.thin-pool", f"{pool!r} is not a thin-pool lv")
        elif self.lv_type == "thin":
            ctx.problem(self.path, "a thin lv needs thin-pool: (the pool lv it is made from)")

    def size_arg(self) -> list[str]:
        """``-L``/``-V`` in bytes rounded down to whole extents (as diskimage-builder)."""
        if "size" in self.config:
            size = parse_size(self.config["size"])
            size -= size % PHYSICAL_EXTENT_BYTES
            return ["-V" if self.lv_type == "thin" else "-L", f"{size}B"]
        if "extents" in self.config:
            return ["-l", str(self.config["extents"])]
        return []

    def argv(self) -> list[str]:
        argv = ["lvcreate", "--name", self.name]
        if self.lv_type:
            argv += ["--type", self.lv_type]
        if self.config.get("thin-pool"):
            argv += ["--thin-pool", str(self.config["thin-pool"])]
        return [*argv, *self.size_arg(), *self.config.get("options", []), self.config["base"]]

    def create(self, ctx: CreateContext) -> None:
        """Made by the lvm node."""


class Lvm(_LvmNode):
    """The ``lvm`` config entry: one graph node that makes all its pvs, vgs and lvs.

    As in diskimage-builder, it comes after the block devices its pvs are on, and its
    pv, vg and lv nodes are placeholders after it: it runs every pvcreate, then every
    vgcreate, then every lvcreate, each in config order.
    """

    kind: ClassVar[str] = "lvm"
    base_kinds: ClassVar[tuple[str, ...]] = ("blockdev",)
    needs_base: ClassVar[bool] = False

    pvs: list[Pv]
    vgs: list[Vg]
    lvs: list[Lv]

    @classmethod
    def from_config(cls, raw: RawNode, params: BlockDeviceParams) -> list[Node]:
        node = cls(raw.name, raw.config, raw.path, params)
        node.pvs, node.vgs, node.lvs = [], [], []
        groups: dict[str, Any] = {"pvs": node.pvs, "vgs": node.vgs, "lvs": node.lvs}
        classes: dict[str, type[_LvmNode]] = {"pvs": Pv, "vgs": Vg, "lvs": Lv}
        for key, node_cls in classes.items():
            items = raw.config.get(key)
            for j, item in enumerate(items if isinstance(items, list) else []):
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    continue
                child = node_cls(item["name"], dict(item), f"{raw.path}.{key}[{j}]", params)
                if isinstance(child, Pv):
                    child.owner = raw.name
                groups[key].append(child)
        return [node, *node.pvs, *node.vgs, *node.lvs]

    @property
    def bases(self) -> list[str]:
        seen: list[str] = []
        for pv in self.pvs:
            base = pv.config.get("base")
            if isinstance(base, str) and base not in seen:
                seen.append(base)
        return seen

    def plan(self, devices: Mapping[str, str]) -> list[list[str]]:
        """Every command create() runs, given the pvs' block devices by base name."""
        pv_dev = {pv.name: devices[pv.config["base"]] for pv in self.pvs}
        cmds = [pv.argv(pv_dev[pv.name]) for pv in self.pvs]
        cmds += [vg.argv([pv_dev[b] for b in vg.bases]) for vg in self.vgs]
        cmds += [lv.argv() for lv in self.lvs]
        return cmds

    def create(self, ctx: CreateContext) -> None:
        devices = {b: ctx.values(b)["device"] for b in self.bases}
        pv_dev = {pv.name: devices[pv.config["base"]] for pv in self.pvs}
        for pv in self.pvs:
            run.run(pv.argv(pv_dev[pv.name]), env=resources.LVM_ENV)
            ctx.publish(pv.name, device=pv_dev[pv.name])
        for vg in self.vgs:
            with resources.signals_deferred():
                run.run(vg.argv([pv_dev[b] for b in vg.bases]), env=resources.LVM_ENV)
                ctx.acquire("lvm-vg", vg.name, vg=vg.name)
            ctx.publish(vg.name, vg=vg.name)
        for lv in self.lvs:
            run.run(lv.argv(), env=resources.LVM_ENV)
            vg_name = lv.config["base"]
            ctx.publish(lv.name, device=lv_device(vg_name, lv.name), vg=vg_name)
