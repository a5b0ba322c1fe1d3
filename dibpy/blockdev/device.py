"""BlockDevice: create, query, write fstab for, and tear down one validated config.

Ownership: a BlockDevice owns the journal in ``<build-dir>/states/block-device/``.
:meth:`BlockDevice.create` pushes a release callback for every resource onto the
caller's ExitStack the moment the resource exists; the caller's stack therefore frees
everything if anything later fails.  :meth:`umount` is the orderly teardown (FAT content
copied in, fstrim, umount, partx -d, losetup -d, wait); the stack's callbacks are no-ops
afterwards.  The image file stays until :meth:`delete`.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

from dibpy import loopdev, mounts
from dibpy.blockdev import resources
from dibpy.blockdev.config import BlockDeviceConfig
from dibpy.blockdev.params import BlockDeviceParams
from dibpy.blockdev.plugin import CreateContext, Node
from dibpy.blockdev.plugins.fstab import Fstab
from dibpy.blockdev.plugins.local_loop import LocalLoop
from dibpy.blockdev.plugins.mkfs import Mkfs
from dibpy.blockdev.plugins.mount import Mount, mount_sort_key
from dibpy.blockdev.state import Journal
from dibpy.errors import ConfigError, DibpyError
from dibpy.log import LOG

GETVAL_SYMBOLS = (
    "root-label",
    "root-fstype",
    "boot-label",
    "mount-points",
    "image-path",
    "image-block-device",
    "image-block-devices",
)


class BlockDevice:
    def __init__(
        self,
        config: BlockDeviceConfig,
        params: BlockDeviceParams | None = None,
        *,
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.params = params or config.params
        self.nodes: dict[str, Node] = config.nodes
        self.journal = journal or Journal.load(self.params.state_dir / "state.json")

    # -- queries ---------------------------------------------------------------------

    def mounts(self) -> list[Mount]:
        """Mount nodes in mount order (depth, then path); swap last."""
        ms = [n for n in self.nodes.values() if isinstance(n, Mount)]
        return sorted(ms, key=lambda m: (m.swap, mount_sort_key(m.mount_point)))

    def _mount_at(self, mount_point: str) -> Mount | None:
        for m in self.mounts():
            if m.mount_point == mount_point:
                return m
        return None

    def _fs_at(self, mount_point: str) -> Mkfs | None:
        m = self._mount_at(mount_point)
        if m is None:
            return None
        fs = self.nodes[m.config["base"]]
        return fs if isinstance(fs, Mkfs) else None

    @property
    def root_fs(self) -> Mkfs | None:
        fs = self._fs_at("/")
        if fs is None and isinstance(self.nodes.get("mkfs_root"), Mkfs):
            fs = self.nodes["mkfs_root"]  # type: ignore[assignment]
        return fs

    @property
    def image_node(self) -> LocalLoop:
        node = self.nodes.get("image0")
        if isinstance(node, LocalLoop):
            return node
        loops = [n for n in self.nodes.values() if isinstance(n, LocalLoop)]
        if not loops:
            raise ConfigError("the block-device config has no local_loop image")
        return loops[0]

    @property
    def image_path(self) -> Path:
        return self.image_node.image_path

    @property
    def root_mount(self) -> Path:
        return self.params.mount_base

    def getval(self, symbol: str) -> str:
        """diskimage-builder's ``getval`` answers, as strings."""
        if symbol == "root-label":
            return self.root_fs.label if self.root_fs else ""
        if symbol == "root-fstype":
            return self.root_fs.fstype if self.root_fs else ""
        if symbol == "boot-label":
            # as diskimage-builder: only a separate /boot has one (the bootloader element
            # then adds boot=LABEL=... to the kernel command line)
            fs = self._fs_at("/boot")
            return fs.label if fs else ""
        if symbol == "mount-points":
            # "|"-separated, as diskimage-builder's elements split it
            return "|".join(m.mount_point for m in self.mounts() if not m.swap)
        if symbol == "image-path":
            return str(self.image_path)
        if symbol == "image-block-device":
            dev = self.journal.values(self.image_node.name).get("device")
            if not dev:
                raise DibpyError("image-block-device is known only after create")
            return str(dev)
        if symbol == "image-block-devices":
            pairs = []
            for n in self.nodes.values():
                if isinstance(n, LocalLoop):
                    dev = self.journal.values(n.name).get("device")
                    if dev:
                        pairs.append(f"{n.name}:{dev}")
            return " ".join(pairs)
        raise ConfigError(
            f"getval: unknown symbol {symbol!r}", hint="one of: " + ", ".join(GETVAL_SYMBOLS)
        )

    # -- lifecycle -------------------------------------------------------------------

    def create(self, stack: ExitStack) -> None:
        """Make every node in graph order; every resource lands on ``stack`` at once."""
        if self.journal.live():
            raise DibpyError(
                f"the block device of {self.params.build_dir} is still set up",
                hint="run `dib-block-device umount` / `cleanup` first",
            )
        self.journal.data = Journal(None).data
        self.journal.save()
        for name in self.config.order:
            node = self.nodes[name]
            LOG.debug("block-device: creating %s (%s)", name, node.plugin)
            with ExitStack() as node_stack:
                node.create(CreateContext(self.journal, node_stack, self.nodes, self.params))
                stack.push(node_stack.pop_all())
        # from here the image file is the product: only delete() removes it
        for entry in self.journal.live():
            if entry["kind"] == "image-file":
                entry["released"] = True
        self.journal.data["created"] = True
        self.journal.save()

    def fstab_lines(self) -> list[str]:
        lines = []
        fstabs = {n.config["base"]: n for n in self.nodes.values() if isinstance(n, Fstab)}
        for m in self.mounts():
            fstab = fstabs.get(m.name)
            if fstab is None:
                continue
            fs = self.nodes[m.config["base"]]
            assert isinstance(fs, Mkfs)
            values = self.journal.values(fs.name)
            label = values.get("label", fs.label)
            spec = f"LABEL={label}" if label else f"UUID={values.get('uuid')}"
            lines.append(
                f"{spec} {m.mount_point} {fs.fstype} {fstab.options} "
                f"{fstab.dump_freq} {fstab.fsck_passno}"
            )
        return lines

    def write_fstab(self, etc_dir: Path) -> Path:
        etc_dir.mkdir(parents=True, exist_ok=True)
        path = etc_dir / "fstab"
        path.write_text("".join(line + "\n" for line in self.fstab_lines()))
        return path

    def umount(self) -> None:
        """Orderly teardown of everything create() made; raises if something is stuck."""
        self.journal.release_all(strict=True)

    def cleanup(self) -> list[str]:
        """Best-effort teardown (after a crash too); then forget the state.  Keeps the image.

        Also catches what the journal may have missed: mounts under the mount base and
        loop devices backed by our image files.
        """
        failures = self.journal.release_all(strict=False)
        failures += self._sweep()
        if not failures:
            shutil.rmtree(self.params.state_dir, ignore_errors=True)
        return failures

    def delete(self) -> list[str]:
        failures = self.cleanup()
        for n in self.nodes.values():
            if isinstance(n, LocalLoop):
                n.image_path.unlink(missing_ok=True)
        return failures

    def _sweep(self) -> list[str]:
        failures = []
        for mp in mounts.mounts_under(self.params.mount_base):
            try:
                LOG.warning("cleanup: %s is still mounted; unmounting", mp)
                resources.umount(mp)
            except DibpyError as e:
                failures.append(str(e))
        for n in self.nodes.values():
            if not isinstance(n, LocalLoop):
                continue
            for dev in loopdev.loops_backed_by(n.image_path):
                LOG.warning("cleanup: %s still backs %s; detaching", n.image_path, dev)
                try:
                    resources.partx_delete(dev)
                    loopdev.detach_loop(dev, str(n.image_path))
                except DibpyError as e:
                    failures.append(str(e))
        return failures
