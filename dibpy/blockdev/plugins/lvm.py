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


class Pv(_LvmNode):
    kind: ClassVar[str] = "pv"
    base_kinds: ClassVar[tuple[str, ...]] = ("blockdev",)

    def create(self, ctx: CreateContext) -> None:
        device = ctx.values(self.config["base"])["device"]
        run.run(["pvcreate", *self.config.get("options", []), device], env=resources.LVM_ENV)
        ctx.publish(self.name, device=device)


class Vg(_LvmNode):
    kind: ClassVar[str] = "vg"
    base_kinds: ClassVar[tuple[str, ...]] = ("pv",)

    def create(self, ctx: CreateContext) -> None:
        pvs = [ctx.values(b)["device"] for b in self.bases]
        with resources.signals_deferred():
            run.run(
                ["vgcreate", *self.config.get("options", []), self.name, *pvs],
                env=resources.LVM_ENV,
            )
            ctx.acquire("lvm-vg", self.name, vg=self.name)
        ctx.publish(self.name, vg=self.name)


class Lv(_LvmNode):
    kind: ClassVar[str] = "blockdev"
    base_kinds: ClassVar[tuple[str, ...]] = ("vg",)

    def after(self, nodes: Mapping[str, Node]) -> list[str]:
        pool = self.config.get("thin_pool")
        return [pool] if pool else []

    @property
    def lv_type(self) -> str:
        if self.config.get("thin_pool"):
            return "thin"
        return str(self.config.get("type", "linear"))

    def validate(self, ctx: ValidationContext) -> None:
        has_size, has_ext = "size" in self.config, "extents" in self.config
        if has_size == has_ext:
            ctx.problem(self.path, "give exactly one of size or extents")
        if has_size:
            try:
                parse_size(self.config["size"])
            except ConfigError as e:
                ctx.problem(f"{self.path}.size", e.message)
        if self.lv_type == "thin":
            pool = self.config.get("thin_pool")
            if not pool:
                ctx.problem(self.path, "a thin lv needs thin_pool")
            elif pool not in ctx.nodes or getattr(ctx.nodes[pool], "lv_type", "") != "thin-pool":
                ctx.problem(f"{self.path}.thin_pool", f"{pool!r} is not a thin-pool lv")
            if has_ext:
                ctx.problem(f"{self.path}.extents", "a thin lv takes a virtual size, not extents")

    def argv(self) -> list[str]:
        vg = self.config["base"]
        if "size" in self.config:
            amount = ["-L", f"{parse_size(self.config['size'])}b"]
        else:
            amount = ["-l", str(self.config["extents"])]
        opts = list(self.config.get("options", []))
        if self.lv_type == "thin":
            return [
                "lvcreate",
                "--type",
                "thin",
                "-V",
                amount[1],
                "--thinpool",
                self.config["thin_pool"],
                "-n",
                self.name,
                *opts,
                vg,
            ]
        if self.lv_type == "thin-pool":
            return ["lvcreate", "--type", "thin-pool", *amount, "-n", self.name, *opts, vg]
        return ["lvcreate", "-y", *amount, "-n", self.name, *opts, vg]

    def create(self, ctx: CreateContext) -> None:
        run.run(self.argv(), env=resources.LVM_ENV)
        vg = self.config["base"]
        ctx.publish(self.name, device=lv_device(vg, self.name), vg=vg)


class Lvm(_LvmNode):
    """The ``lvm`` config entry: expands into its pv, vg and lv nodes."""

    kind: ClassVar[str] = "lvm"

    @classmethod
    def from_config(cls, raw: RawNode, params: BlockDeviceParams) -> list[Node]:
        out: list[Node] = []
        for key, node_cls in (("pvs", Pv), ("vgs", Vg), ("lvs", Lv)):
            for j, item in enumerate(raw.config.get(key, [])):
                cfg: dict[str, Any] = dict(item)
                out.append(node_cls(cfg["name"], cfg, f"{raw.path}.{key}[{j}]", params))
        return out
