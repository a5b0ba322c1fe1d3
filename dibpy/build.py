"""The orchestrator: one Build owns one ExitStack.

Flow (diskimage-builder's): validate everything -> build dir (tmpfs when memory allows)
-> merge hooks -> root.d -> extra-data.d -> pre-install.d / install.d / ``-p`` packages /
post-install.d in the chroot -> post-root.d -> size the image -> block device create ->
copy the tree in -> fstab -> pre-finalise.d -> finalise.d (chroot of the mounted image)
-> cleanup.d -> unmount -> outputs -> checksums.

Resources: the build directory, its tmpfs, every mount and the block device are pushed
onto the build's ExitStack the moment they exist; whatever fails or interrupts the
build, the stack unwinds them in reverse.  Outputs are written under temporary names
and renamed into place only when they passed their check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dibpy import (
    __version__,
    archivestate,
    chroot,
    envcheck,
    events,
    hookenv,
    imagecache,
    mounts,
    pkgcache,
    recovery,
    run,
    treecache,
    treelayers,
)
from dibpy import outputs as outputs_mod
from dibpy.blockdev import (
    BlockDevice,
    BlockDeviceConfigError,
    BlockDeviceParams,
    config_source,
    load_config,
)
from dibpy.blockdev.state import Journal
from dibpy.config import CHECKSUMS, BuildConfig, parse_gib_size
from dibpy.elements import find_library, package_installs, params, resolve
from dibpy.elements.model import PACKAGES_PHASE, PHASE_TABLE, Element, tree_segments
from dibpy.elements.resolve import Resolution, default_elements
from dibpy.errors import ConfigError, DibpyError, Interrupted, MultiError
from dibpy.hookenv import LIB_DIR
from dibpy.hooks import CLASH_HINT, HookTree, hook_clashes, merge_hooks, run_phase
from dibpy.mounts import unmount_left_behind
from dibpy.outputs import OutputOptions, OutputPlugin
from dibpy.outputs import get as get_output

LOG = logging.getLogger("dibpy")

#: seconds a build waits at its end for what its hooks left running (a cache compressed
#: in the background) before stopping it
LEFT_RUNNING_GRACE = 120.0

#: the phases that run in a chroot of the image: none runs for an image that is not Linux
CHROOT_PHASES = tuple(p.name for p in PHASE_TABLE if p.in_chroot)
GIB = 1024**3
MIB = 1024**2
#: free bytes the cache's filesystem must have for the tree's layers to be written there
LAYERS_BESIDE_CACHE_ROOM = 16 * GIB


#: the host programs every build runs -> the Debian package that has each
HOST_TOOL_PACKAGES = {
    "chroot": "coreutils",
    "mount": "mount",
    "umount": "mount",
    "losetup": "mount",
    "qemu-img": "qemu-utils",
}


@dataclass
class StageTimer:
    """Wall time of each build stage, for the log, the manifest and bench/."""

    stages: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.stages.append((name, time.monotonic() - start))

    def table(self) -> str:
        total = sum(t for _, t in self.stages) or 1.0
        width = max((len(n) for n, _ in self.stages), default=5)
        rows = ["build stages:"]
        rows += [f"  {n:<{width}}  {t:8.2f} s  {100 * t / total:5.1f} %" for n, t in self.stages]
        rows.append(f"  {'total':<{width}}  {sum(t for _, t in self.stages):8.2f} s")
        return "\n".join(rows)


@dataclass(frozen=True)
class BuildResult:
    outputs: tuple[Path, ...]
    manifest_dir: Path | None
    stages: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Plan:
    """Everything validated before any resource exists."""

    cfg: BuildConfig
    resolution: Resolution
    outputs: tuple[tuple[OutputPlugin, Path], ...]
    elements_path: str
    block_device_text: str | None
    block_device_origin: str
    #: the image's operating system: "linux" unless an element's ``element-os`` says
    #: otherwise; for any other, no chroot phase, chroot mounts or fstab
    os_family: str = "linux"
    #: the root filesystem the block-device config will make ("" with no final image):
    #: the hooks before the block device exists see it as DIB_ROOT_FSTYPE
    root_fs_type: str = ""


def plan(cfg: BuildConfig) -> Plan:
    """Validate the whole build (elements, output types, block-device config, host tools).

    Every problem found is reported together, before any resource exists.
    """
    problems: list[str] = []
    hints: list[str] = []

    def note(e: ConfigError) -> None:
        problems.extend(e.problems if isinstance(e, MultiError) else [e.message])
        if e.hint:
            hints.append(e.hint)

    library = find_library(cfg.environ)
    names = default_elements(
        cfg.elements,
        skip_base=cfg.skip_base,
        arch=cfg.arch,
        ramdisk_element=cfg.ramdisk_element if cfg.ramdisk else None,
    )
    resolution: Resolution | None = None
    try:
        resolution = resolve(names, library)
    except ConfigError as e:
        note(e)
    if resolution is not None:
        # found now, not once the build directory exists and the hooks are being copied
        clashes = hook_clashes(resolution.elements)
        problems += clashes
        if clashes:
            hints.append(CLASH_HINT)
    if resolution is not None and "package-installs" in resolution.names:
        # read by an extra-data.d hook, after root.d: checked now instead
        bad = package_installs.problems(resolution.elements)
        problems += bad
        if bad:
            hints.append("see the package-installs element's README for the format")
    no_final = cfg.ramdisk or (resolution is not None and "no-final-image" in resolution.names)
    outputs: list[tuple[OutputPlugin, Path]] = []
    base = cfg.output_base
    for t in cfg.image_types:
        try:
            plugin = get_output(t)
        except ConfigError as e:
            note(e)
            continue
        dest = base.with_name(base.name + "." + plugin.extension)
        if cfg.overwrite_old_image and dest.is_dir() and not dest.is_symlink():
            problems.append(
                f"-o {cfg.image_name}: {dest} is a directory; OVERWRITE_OLD_IMAGE=1 would "
                f"replace it with the {t} image"
            )
            hints.append("remove it or choose another -o")
        outputs.append((plugin, dest))
    if no_final:
        outputs = []
    if cfg.boot_test and not any(p.extension in ("qcow2", "raw") for p, _ in outputs):
        problems.append("--boot-test needs a qcow2 or raw output")
        hints.append("add -t qcow2" if not no_final else "a no-final-image build has no image")
    for warning in inapplicable_options(cfg, no_final):
        LOG.warning("%s", warning)
    if resolution is not None:
        check_parameters(cfg, resolution.elements, problems, hints)
    try:
        outputs_mod.validate([p for p, _ in outputs], output_options(cfg))
    except ConfigError as e:
        note(e)
    needed = ["chroot", "mount", "umount", "losetup"]
    if any(p.name != "raw" for p, _ in outputs):
        needed.append("qemu-img")
    missing = [t for t in needed if shutil.which(t) is None]
    if missing:
        named = ", ".join(f"{t} (Debian package {HOST_TOOL_PACKAGES[t]})" for t in missing)
        problems.append(f"required host program missing: {named}")
        hints.append("install it (./dev setup installs every host package)")
    bd_text: str | None = None
    bd_origin = ""
    root_fs_type = ""
    if resolution is not None and not no_final:
        try:
            bd_text, bd_origin = config_source(
                resolution.elements,
                cfg.arch,
                {"DIB_BLOCK_DEVICE_CONFIG": cfg.block_device_config or ""},
            )
            # structure, names, labels and plugins are checked now; sizes once known
            planned = load_config(
                bd_text, _bd_params(cfg, Path("/nonexistent"), 8 * GIB), origin=bd_origin
            )
            root_fs_type = BlockDevice(planned, journal=Journal(None)).getval("root-fstype")
        except BlockDeviceConfigError as e:
            # each problem keeps the file (or variable) the config came from
            problems.extend(f"block-device config ({e.origin}): {p}" for p in e.problems)
            if e.hint:
                hints.append(e.hint)
        except ConfigError as e:
            note(e)
    family = "linux"
    if resolution is not None:
        try:
            family = image_os_family(resolution.elements, cfg.packages)
        except ConfigError as e:
            note(e)
    try:
        cache_max_size(cfg)
    except ConfigError as e:
        note(e)
    if problems or resolution is None:
        raise MultiError(problems, hint="; ".join(dict.fromkeys(hints)) or None)
    return Plan(
        cfg=cfg,
        resolution=resolution,
        outputs=tuple(outputs),
        elements_path=library.elements_path,
        block_device_text=bd_text,
        block_device_origin=bd_origin,
        os_family=family,
        root_fs_type=root_fs_type,
    )


def check_parameters(
    cfg: BuildConfig, elements: Sequence[Element], problems: list[str], hints: list[str]
) -> None:
    """The variables of the build against the elements' parameters.yaml, and the
    ``DIB_*`` variables nothing reads (warnings; problems with ``--strict``)."""
    declared: set[str] = set()
    bad: list[str] = []
    readable = []
    for e in elements:
        try:
            declared.update(e.parameters)
            readable.append(e)
        except ConfigError as err:
            bad.append(err.message)
    unknown: list[str] = []
    bad += params.problems(readable, cfg.environ, unknown)
    problems += bad
    if bad:
        hints.append("element-info --params ELEMENTS shows each variable's type and default")
    # a misspelt variable is otherwise ignored without a word
    unread = unknown + envcheck.unread_variables(cfg.environ, [e.path for e in elements], declared)
    if cfg.strict:
        problems += unread
        if unread:
            hints.append("unset them, or build without --strict (DIB_STRICT=0)")
    else:
        for warning in unread:
            LOG.warning("%s", warning)


def image_os_family(elements: Sequence[Element], packages: Sequence[str] = ()) -> str:
    """The image's OS family from the elements' ``element-os`` files ("linux" if none).

    An image that is not Linux has no chroot, so every element hook of a chroot phase,
    and ``-p`` packages, are errors (each named, all at once); so is a disagreement.
    """
    declared = {e.name: e.os_family for e in elements if e.os_family}
    families = sorted(set(declared.values()))
    if len(families) > 1:
        said = ", ".join(f"{n}: {f}" for n, f in sorted(declared.items()))
        raise ConfigError(
            f"the elements' element-os files disagree on the image's operating system ({said})",
            hint="one operating-system element per image",
        )
    family = families[0] if families else "linux"
    if family == "linux":
        return family
    by = ", ".join(sorted(declared))
    problems = [
        f"element {e.name}: {phase}/{hook.name} runs in a chroot, but the image is {family} "
        f"(element-os of {by}): it has none"
        for e in elements
        for phase in CHROOT_PHASES
        if (d := e.phase_dir(phase)) is not None
        for hook in sorted(d.iterdir())
        if hook.is_file()
    ]
    if packages:
        problems.append(f"-p {','.join(packages)}: a {family} image has no package manager")
    if problems:
        raise MultiError(
            problems,
            hint="drop those elements (or build with -n, without the base element); "
            "see doc/elements.md, 'Images that are not Linux'",
        )
    return family


#: options that shape the image (disk-image-create flag, BuildConfig field)
_IMAGE_OPTIONS = (
    ("--image-size", "image_size"),
    ("--image-extra-size", "image_extra_size"),
    ("--max-online-resize", "max_online_resize"),
    ("--mkfs-options", "mkfs_options"),
    ("--mkfs-journal-size", "mkfs_journal_size"),
    ("--qemu-img-options", "qemu_img_options"),
    ("--root-label", "root_label"),
    ("--checksum", "checksum"),
    ("-u", "uncompressed"),
)


def cache_max_size(cfg: BuildConfig) -> int | None:
    """DIB_CACHE_MAX_SIZE in bytes (a number of GiB, or with a unit), or None."""
    raw = cfg.environ.get("DIB_CACHE_MAX_SIZE", "")
    if not raw:
        return None
    try:
        return parse_gib_size(raw)
    except ValueError as e:
        raise ConfigError(
            f"DIB_CACHE_MAX_SIZE: {e}", hint="e.g. DIB_CACHE_MAX_SIZE=20G (a plain number is GiB)"
        ) from None


def inapplicable_options(cfg: BuildConfig, no_final: bool) -> list[str]:
    """Options given that this build will not use: each is worth a warning, not silence."""
    out = []
    if no_final:
        why = "a ramdisk build" if cfg.ramdisk else "no-final-image"
        for flag, name in _IMAGE_OPTIONS:
            if getattr(cfg, name):
                out.append(f"{flag} has no effect: {why} writes no disk image")
        if cfg.image_types != ("qcow2",) and not cfg.ramdisk:
            out.append(f"-t {','.join(cfg.image_types)} has no effect: {why} writes no image")
        return out
    if cfg.max_online_resize and not cfg.fs_type.startswith("ext"):
        out.append(
            f"--max-online-resize has no effect on a {cfg.fs_type} root (it sets ext2/3/4's "
            "resize limit)"
        )
    if cfg.mkfs_journal_size and cfg.fs_type not in ("ext3", "ext4"):
        out.append(f"--mkfs-journal-size has no effect on a {cfg.fs_type} root")
    if cfg.uncompressed and not any(t in ("qcow2", "qcow2c") for t in cfg.image_types):
        out.append("-u has no effect: no qcow2 output is written")
    return out


def output_options(cfg: BuildConfig) -> OutputOptions:
    return OutputOptions(
        uncompressed=cfg.uncompressed,
        qemu_img_options=cfg.qemu_img_options,
        environ=cfg.environ,
        image_name=cfg.output_base.name,
        docker_target=cfg.docker_target or "",
        arch=cfg.arch,
    )


def _bd_params(cfg: BuildConfig, build_dir: Path, size: int) -> BlockDeviceParams:
    opts = shlex.split(cfg.mkfs_options)
    # diskimage-builder's ext4 root: an inode per 4 KiB and a 64 MiB journal, so that an
    # image grown many times over still has inodes and journal enough
    if cfg.fs_type == "ext4":
        opts = ["-i", "4096", "-J", f"size={cfg.mkfs_journal_size or 64}", *opts]
    if cfg.max_online_resize:
        opts = ["-E", f"resize={cfg.max_online_resize}", *opts]
    return BlockDeviceParams(
        image_dir=build_dir / "image",
        mount_base=build_dir / "mnt",
        build_dir=build_dir,
        root_fs_type=cfg.fs_type,
        root_label=cfg.effective_root_label,
        image_size=size,
        root_fs_opts=opts,
        arch=cfg.arch,
        block_size=cfg.block_size,
    )


def memory_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def log_image_usage(tree: Path, full: bool) -> None:
    """diskimage-builder's DIB_SHOW_IMAGE_USAGE report: what takes the room in the tree,
    largest first; files and directories of 10 MiB or more unless ``full``."""
    out = run.output(["du", "-a", "-x", "--block-size=1", str(tree)], quiet=True)
    rows = []
    for line in out.splitlines():
        size, _, path = line.partition("\t")
        if size.isdigit() and (full or int(size) >= 10 * MIB):
            rows.append((int(size), "/" + os.path.relpath(path, tree).removeprefix(".")))
    LOG.info("image size report (%s):", "everything" if full else "10 MiB and more")
    for nbytes, where in sorted(rows, reverse=True):
        LOG.info("  %9.1f MiB  %s", nbytes / MIB, where.replace("//", "/"))


def dir_size(path: Path, one_fs: bool = True) -> int:
    """Bytes used by the tree (du -x, apparent block usage).  Not ``one_fs`` for a tree of
    overlay layers on several filesystems, whose files report their layer's device."""
    out = run.output(
        ["du", *(["-x"] if one_fs else []), "-s", "--block-size=1", str(path)], quiet=True
    )
    return int(out.split()[0])


def cfg_env(cfg: BuildConfig, name: str) -> str:
    return cfg.environ.get(name, "")


def image_size_for(cfg: BuildConfig, tree_bytes: int, efi: bool) -> int:
    """diskimage-builder's sizing: the tree / 0.6 (or + extra), plus journal and ESP room."""
    if cfg.image_size:
        return cfg.image_size
    extra = cfg.image_extra_size
    size = tree_bytes + extra if extra else int(tree_bytes / 0.6)
    if cfg.fs_type == "ext4":
        journal = (cfg.mkfs_journal_size or 64) * MIB
        # mke2fs refuses a journal over half the filesystem: a tiny tree still gets one
        size = max(size + journal, 2 * journal + 32 * MIB)
    size += (560 if efi else 16) * MIB  # partition table, BIOS boot, alignment, ESP
    return -(-size // MIB) * MIB


class Build:
    """One image build.  ``run()`` owns the ExitStack that owns every resource."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.cfg = plan.cfg
        self.timer = StageTimer()
        self.stack = contextlib.ExitStack()
        #: False for an image whose element-os says it is not Linux: no chroot, no fstab
        self.linux = plan.os_family == "linux"
        self.build_dir = Path()
        self.tree: HookTree | None = None
        #: the tree hooks work on now (for break=after-error)
        self.current_target: Path | None = None
        #: set when the tree is built (not reused) and should be saved
        self.tree_cache: treecache.TreeCache | None = None
        self.tree_key = ""
        #: the package archive's state read at plan time (DIB_ARCHIVE_STATE for hooks)
        self.archive_state: list[tuple[str, str, str]] = []
        #: where the tree's overlay upper directories are made (Build._layers_root)
        self.layers_root = Path()
        #: the merged hook tree as merged, before any hook wrote into it
        self.hooks_baseline: treecache.HooksManifest = {}
        #: where the packages apt downloads are kept (DIB_APT_LOCAL_CACHE), or None
        self.apt_pool = pkgcache.pool_dir(
            plan.resolution.elements, self.cfg.environ, self.cfg.image_cache
        )
        #: the tree cache's checkpoints of this build (empty when the cache is off)
        self.checkpoints: list[treecache.Checkpoint] = []
        #: the tree as overlay layers, one per checkpoint (None: tarball checkpoints)
        self.layers: treelayers.LayeredTree | None = None
        #: a checkpoint could not be kept as a layer: the later ones are not kept either
        self.layering_stopped = False
        #: the image cache's key of this build (None: not cached) and the entry reused
        self.image_key: str | None = None
        self.image_hit: tuple[Path, float] | None = None
        #: checkpoints from this index on are not restored (a break= point is in them)
        self.restore_limit = 0
        self.cache_record: dict[str, object] = {}
        #: NAME.d when this build made it (removed if the build fails)
        self.new_manifest_dir: Path | None = None
        self.lockfiles = hookenv.lockfiles_dir(self.cfg.environ)

    # -- environment -------------------------------------------------------------
    def hook_env(
        self, target: Path, *, in_chroot: bool, extra: Mapping[str, str] = {}
    ) -> dict[str, str]:
        """The environment of a hook run on ``target`` (see dibpy.hookenv, the contract).

        Before the block device exists, DIB_ROOT_FSTYPE is the root filesystem its config
        will make (with a block-device YAML that is not always FS_TYPE)."""
        if self.plan.root_fs_type:
            extra = {"DIB_ROOT_FSTYPE": self.plan.root_fs_type, **extra}
        return hookenv.hook_env(
            self.cfg,
            self.plan.resolution.elements,
            elements_path=self.plan.elements_path,
            build_dir=self.build_dir,
            target=target,
            in_chroot=in_chroot,
            lockfiles=self.lockfiles,
            extra=extra,
            archive_state=self.archive_state,
        )

    # -- phases --------------------------------------------------------------------
    def phase(
        self,
        phase: str,
        target: Path,
        *,
        in_chroot: bool,
        extra: Mapping[str, str] = {},
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        assert self.tree is not None
        self.current_target = target
        self._break("before-" + phase.removesuffix(".d"), target)
        events.emit("phase-start", phase=phase, in_chroot=in_chroot)
        start, status = time.monotonic(), "error"
        try:
            with self.timer.stage(phase):
                run_phase(
                    self.tree,
                    phase,
                    self.hook_env(target, in_chroot=in_chroot, extra=extra),
                    chroot=target if in_chroot else None,
                    before_each=(lambda: chroot.refresh_resolv_conf(target)) if in_chroot else None,
                    on_line=on_line,
                )
            status = "ok"
        finally:
            seconds = round(time.monotonic() - start, 3)
            events.emit("phase-end", phase=phase, seconds=seconds, status=status)
        self._break("after-" + phase.removesuffix(".d"), target)

    def _break(self, point: str, target: Path) -> None:
        if point not in self.cfg.breaks:
            return
        if not sys.stdin.isatty():
            LOG.warning("break=%s: stdin is not a terminal, not opening a shell", point)
            return
        LOG.info("break=%s: opening a shell in %s; exit it to continue", point, target)
        # interactive: the one place a child gets our terminal instead of run.py's pipes
        env = self.hook_env(target, in_chroot=True)
        subprocess.call(["chroot", str(target), "bash", "-i"], env=env)

    # -- the build -----------------------------------------------------------------
    def run(self) -> BuildResult:
        if os.geteuid() != 0:
            # found now, not as the first mount's failure
            raise DibpyError(
                "must run as root (loop devices, mounts, chroot)",
                hint="run it as root (dibpy needs no sudo); element-info and dib-lint do not",
            )
        with self.stack:
            # runs last, after every unmount: a failed build leaves no NAME.d it made
            self.stack.callback(self._drop_new_manifest_dir)
            try:
                result = self._run()
                self.new_manifest_dir = None
                return result
            except DibpyError as e:
                # before the stack unwinds: the tree and its mounts are still there
                if "after-error" in self.cfg.breaks and self.current_target is not None:
                    LOG.error("%s", e)
                    self._break("after-error", self.current_target)
                raise

    def _make_build_dir(self) -> None:
        cfg = self.cfg
        cfg.tmp_dir.mkdir(parents=True, exist_ok=True)
        # what builds killed outright (SIGKILL) left in this TMP_DIR; live ones are left be
        recovery.clean_dead(cfg.tmp_dir)
        self.build_dir = Path(tempfile.mkdtemp(prefix="dib_build.", dir=cfg.tmp_dir))
        recovery.claim(self.build_dir, [dest for _, dest in self.plan.outputs])
        # runs after the directory is removed; a directory that stays keeps its note
        self.stack.callback(_release_note, self.build_dir)
        self.stack.callback(_rmtree_logged, self.build_dir)
        want = 2 * cfg.min_tmpfs * GIB
        if cfg.no_tmpfs:
            LOG.info("building in %s (no tmpfs, as asked)", self.build_dir)
        elif memory_available() >= want:
            mounts.mount(
                ["-t", "tmpfs", "-o", "mode=0755", "tmpfs"],
                self.build_dir,
                self.stack,
                "the build tmpfs",
            )
            LOG.info("building in tmpfs at %s", self.build_dir)
        else:
            LOG.info(
                "building on disk in %s: less than %d GiB of memory available for tmpfs",
                self.build_dir,
                want // GIB,
            )
        # whatever a hook mounted inside the build goes before the build dir does
        self.stack.callback(unmount_left_behind, self.build_dir, "the build directory")
        # and what the hooks left running goes first: waited for, unless interrupted
        self.stack.push(self._reap_left_running)
        for sub in ("built", "hooks", "image", "block-device"):
            (self.build_dir / sub).mkdir()
        # diskimage-builder keeps the tree at $TMP_BUILD_DIR/mnt in every phase (and its
        # clients' hooks write there, e.g. the agent ramdisk's TLS and podman settings in
        # pre-finalise.d); ours is at built/, so mnt points at it until the image is mounted
        (self.build_dir / "mnt").symlink_to("built")
        self.lockfiles.mkdir(parents=True, exist_ok=True)

    def _reap_left_running(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        interrupted = exc_type is not None and (
            issubclass(exc_type, Interrupted) or not issubclass(exc_type, Exception)
        )
        run.reap_left_running(self.build_dir, 0 if interrupted else LEFT_RUNNING_GRACE)

    def _run(self) -> BuildResult:
        with self.timer.stage("prepare"):
            try:
                self._make_build_dir()
                self.tree = merge_hooks(self.plan.resolution.elements, self.build_dir / "hooks")
                self.hooks_baseline = treecache.hooks_manifest(self.tree.root)
            except OSError as e:
                raise DibpyError(
                    f"cannot prepare the build directory in TMP_DIR {self.cfg.tmp_dir}: "
                    f"{_os_reason(e)}",
                    hint="TMP_DIR needs room (space and inodes) for the merged hooks and, "
                    "with --no-tmpfs, the whole tree: free some or point TMP_DIR elsewhere",
                ) from None
        built = self.build_dir / "built"
        LOG.info("elements: %s", " ".join(self.plan.resolution.names))
        started = time.time()
        restored = self._restore_cached_tree(built)
        if self.image_hit is not None:
            manifest_dir, outputs = self._reuse_image(*self.image_hit)
        else:
            manifest_dir, outputs = self._build_image(built, restored, started)
        LOG.info("%s", self.timer.table())
        self._write_build_record(manifest_dir)
        for o in outputs:
            LOG.info("wrote %s", o)
        return BuildResult(tuple(outputs), manifest_dir, tuple(self.timer.stages))

    def _build_image(
        self, built: Path, restored: int, started: float
    ) -> tuple[Path | None, list[Path]]:
        """The phases after checkpoint ``restored``, then the image and its outputs (no
        image: the finalise phases on the tree); returns the manifests dir and outputs."""
        self._run_phases(built, restored)
        if self.plan.block_device_text is None:
            if self.tree_cache is not None and self.layers is None:
                # its saves read the tree the finalise phases change (layers: sealed ones)
                self.tree_cache.wait()
            # no image (ramdisk, no-final-image): the finalise phases still run, on the tree
            self._finalise(built, {})
            self.phase("cleanup.d", built, in_chroot=False)
            unmount_left_behind(built, "the tree")
            return self._copy_manifests(built), []
        manifest_dir, outputs = self._image(built)
        if self.image_key is not None:
            with self.timer.stage("image cache save"):
                self._keep_image(started, manifest_dir)
        return manifest_dir, outputs

    def _restore_cached_tree(self, built: Path) -> int:
        """Restore the latest checkpoint whose inputs are unchanged (doc/building.md,
        "Checkpoints"); the index in ``self.checkpoints`` of the one restored, or -1.

        Logs one line per checkpoint (hit, or miss and why) and fills the build record."""
        cfg = self.cfg
        if cfg.no_cache or not treecache.have_tools():
            if cfg.no_cache:
                LOG.info("tree cache: not used (--no-cache)")
            why = "--no-cache" if cfg.no_cache else "the cache's tools are missing"
            events.emit("cache", cache="tree", result="off", reason=why)
            return -1
        with self.timer.stage("tree cache key"):
            settings = {
                "arch": cfg.arch,
                "install_type": cfg.install_type,
                "release": cfg.release or "",
                "mirror": cfg.mirror or "",
            }
            cache = treecache.TreeCache(
                cfg.image_cache,
                cfg.tree_cache_max_age,
                max_size=cache_max_size(cfg),
                layered=self._layers_usable(cfg.image_cache / "dibpy-trees"),
            )
            # read once: the tree cache and the bootstrap cache key on the same state
            self.archive_state = archivestate.archive_state(
                self.plan.resolution.elements, cfg.environ, cfg.image_cache, offline=cfg.offline
            )
            inputs = treecache.tree_inputs(
                self.plan.resolution.elements,
                settings,
                cfg.environ,
                LIB_DIR,
                clear_env=cfg.clear_env,
                cache_dir=cfg.image_cache,
                offline=cfg.offline,
                archive=self.archive_state,
            )
            chain = treecache.checkpoints(
                inputs, self.plan.resolution.elements, " ".join(cfg.packages)
            )
            self.checkpoints = chain
            self.tree_key = chain[-1].key
            usable = len(chain)
            for point in cfg.breaks:
                # a break inside a phase a restore would skip: restore only what is before it
                phase = point.partition("-")[2] + ".d"
                usable = min([usable] + [n for n, c in enumerate(chain) if phase in c.phases])
            self.restore_limit = usable
            self.image_key = self._image_cache_key(chain[-1].key)
            if self.image_key is not None:
                self.image_hit = imagecache.lookup(
                    cfg.image_cache, self.image_key, cfg.tree_cache_max_age
                )
            restored, hit = -1, None
            if cfg.tree_cache_max_age <= 0:
                LOG.info("tree cache: reuse switched off (DIB_TREE_CACHE_MAX_AGE=0)")
            else:
                for n in reversed(range(usable)):
                    hit = self._lookup(cache, n)
                    if hit is not None:
                        restored = n
                        break
        if self.image_hit is not None:
            return -1
        self.tree_cache = cache
        # the savers read the tree and its snapshots: they finish before the build dir goes
        mounts.push_cleanup(self.stack, cache.wait, what="saving the tree cache")
        # after the tree's overlay is unmounted (pushed later, so unwound first)
        self.stack.callback(cache.release)
        names = " ".join(self.plan.resolution.names)
        records: list[dict[str, object]] = []
        first_miss: list[str] = []
        for n, c in enumerate(chain):
            rec: dict[str, object] = {"after": c.after, "key": c.key}
            if n <= restored:
                rec["hit"] = True
                if n == restored:
                    assert hit is not None
                    rec["restored"] = True
                    first = chain[0].phases[0]
                    LOG.info(
                        "tree cache: hit after %s: reusing cached tree %s, built %s ago "
                        "(at most %s allowed; --no-cache to rebuild); %s skipped",
                        c.after,
                        c.key[:12],
                        treecache.human_age(hit.age),
                        treecache.human_age(cfg.tree_cache_max_age),
                        first if c.after == first else f"{first} to {c.after}",
                    )
                else:
                    LOG.info("tree cache: hit after %s", c.after)
                events.emit("cache", cache="tree", result="hit", key=c.key, after=c.after)
            else:
                reasons = self._miss_reasons(cache, names, n, restored)
                rec.update(hit=False, miss=reasons)
                first_miss = first_miss or reasons
                LOG.info(
                    "tree cache: miss after %s: %s (%s)", c.after, "; ".join(reasons), c.key[:12]
                )
                events.emit(
                    "cache",
                    cache="tree",
                    result="miss",
                    key=c.key,
                    after=c.after,
                    reason="; ".join(reasons),
                )
            records.append(rec)
        self.cache_record = {
            "tree_key": self.tree_key,
            "reused": restored == len(chain) - 1,
            "enabled": True,
            "restored_after": chain[restored].after if restored >= 0 else None,
            "checkpoints": records,
        }
        if first_miss:
            self.cache_record["miss"] = first_miss
        if restored >= 0:
            assert hit is not None
            self.cache_record.update(
                age_seconds=round(hit.age),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hit.created)),
            )
        self._restore_tree(cache, hit if restored >= 0 else None, built, restored)
        return restored

    def _image_cache_key(self, tree_key: str) -> str | None:
        """The image cache's key, or None where outputs are not cached: no final image (a
        ramdisk's files come from its hooks), a break= point, DIB_IMAGE_CACHE_OUTPUTS=0."""
        text = self.plan.block_device_text
        if text is None or self.cfg.breaks or not self.cfg.image_cache_outputs:
            return None
        inputs = imagecache.image_inputs(tree_key, self.plan.resolution.elements, self.cfg, text)
        return imagecache.image_key(inputs)

    def _reuse_image(self, entry: Path, age: float) -> tuple[Path | None, list[Path]]:
        """Copy an unchanged build's outputs into place (doc/building.md, "Image cache")."""
        cfg = self.cfg
        assert self.image_key is not None
        LOG.info(
            "image cache: hit: reusing the outputs of an unchanged build (%s), built %s ago "
            "(at most %s allowed; --no-cache to rebuild); every phase skipped",
            self.image_key[:12],
            treecache.human_age(age),
            treecache.human_age(cfg.tree_cache_max_age),
        )
        events.emit("cache", cache="image", result="hit", key=self.image_key)
        out_dir = cfg.output_base.parent
        with self.timer.stage("image cache restore"):
            out_dir.mkdir(parents=True, exist_ok=True)
            try:
                outputs = imagecache.reuse(
                    entry, out_dir, lambda d: _keep_old(d, cfg.overwrite_old_image)
                )
            except (OSError, DibpyError) as e:
                raise DibpyError(
                    f"cannot copy the cached image's outputs to {out_dir}: {_os_reason(e)}",
                    hint="-o must name a place you can write to, with room for the image; "
                    "--no-cache builds it afresh",
                ) from None
            manifest_dir = self._copy_manifests_from(entry / imagecache.MANIFESTS)
        self.cache_record = {
            "tree_key": self.tree_key,
            "reused": True,
            "enabled": True,
            "image": {"key": self.image_key, "hit": True, "age_seconds": round(age)},
        }
        return manifest_dir, outputs

    def _keep_image(self, started: float, manifest_dir: Path | None) -> None:
        """Keep what this build wrote beside -o (its outputs, their checksums, what a hook
        wrote there) for the next unchanged build."""
        assert self.image_key is not None
        base = self.cfg.output_base
        files = []
        with contextlib.suppress(OSError):
            for p in sorted(base.parent.iterdir()):
                if p.name != base.name and not p.name.startswith(base.name + "."):
                    continue
                if manifest_dir is not None and p == manifest_dir:
                    continue
                if p.is_symlink() or p.lstat().st_mtime < started - 1:
                    continue  # not this build's
                files.append(p)
        for p in imagecache.open_elsewhere(files):
            LOG.info("image cache: not keeping %s: a process has it open", p.name)
            files.remove(p)
        if not files:
            return
        imagecache.keep(
            self.cfg.image_cache,
            self.image_key,
            files,
            None if manifest_dir is None else manifest_dir / imagecache.MANIFESTS,
            {"elements": " ".join(self.plan.resolution.names), "arch": self.cfg.arch},
        )
        if self.cache_record:
            self.cache_record["image"] = {"key": self.image_key, "hit": False}

    def _layers_usable(self, cache_dir: Path) -> bool:
        """Whether checkpoints are overlay layers: DIB_TREE_CACHE_LAYERS (default on) and
        an overlayfs that takes the cache as a lower layer and the build dir as an upper."""
        if not self.cfg.tree_cache_layers:
            LOG.info("tree cache: checkpoints as tarballs (DIB_TREE_CACHE_LAYERS=0)")
            return False
        self.layers_root = self._layers_root(cache_dir)
        why = treelayers.overlay_unusable(cache_dir, self.layers_root)
        if why is not None and self.layers_root != self.build_dir / "layers":
            # the cache's filesystem cannot hold an upper layer: the build dir's may
            self.layers_root = self.build_dir / "layers"
            why = treelayers.overlay_unusable(cache_dir, self.layers_root)
        if why is not None:
            LOG.info(
                "tree cache: checkpoints as tarballs: overlayfs layers unusable here (%s)", why
            )
            return False
        return True

    def _layers_root(self, cache_dir: Path) -> Path:
        """Where the tree's upper layers are written: beside the cache's entries when the
        build directory is another filesystem (its tmpfs) and the cache's has room, so
        that keeping a checkpoint is a rename, not a copy beside the next phases (on 2
        cores the copy slowed the cold build by 5-10 %); else in the build directory, and
        each kept layer is copied into the cache in the background."""
        own = self.build_dir / "layers"
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            if os.stat(cache_dir).st_dev == os.stat(self.build_dir).st_dev:
                return own
        except OSError:
            return own
        if not _room_to_spare(cache_dir, LAYERS_BESIDE_CACHE_ROOM):
            return own
        recovery.sweep_work_dirs(cache_dir)
        root = recovery.work_dir(cache_dir)
        # after the overlay is unmounted (pushed later, undone first)
        self.stack.callback(_rmtree_logged, root)
        return root

    def _layer_keys(self, n: int) -> list[str]:
        """The layers checkpoint ``n``'s tree is made of: each distinct key up to it."""
        keys: list[str] = []
        for c in self.checkpoints[: n + 1]:
            if c.key not in keys:
                keys.append(c.key)
        return keys

    def _lookup(self, cache: treecache.TreeCache, n: int) -> treecache.Hit | None:
        """Checkpoint ``n``'s entry, if it can be restored: with layers, every layer below
        it too, each held until the build ends."""
        hit = cache.lookup(self.checkpoints[n].key)
        if hit is None or not cache.layered:
            return hit
        keys = self._layer_keys(n)
        if all(cache.lookup(k, quiet=True) is not None and cache.hold(k) for k in keys):
            return hit
        cache.release()
        return None

    def _restore_tree(
        self, cache: treecache.TreeCache, hit: treecache.Hit | None, built: Path, restored: int
    ) -> None:
        """Put checkpoint ``restored``'s tree at ``built`` (none: an empty tree): with
        layers, an overlay of its layers (mounted, nothing copied); else the tarball."""
        if hit is not None and restored >= 0:
            # what the skipped root.d and extra-data.d hooks left in the hook tree for the
            # phases after them (package-installs' lists, say)
            assert self.tree is not None
            treecache.apply_hooks_delta(self.tree.root, hit.hooks)
        if cache.layered:
            lowers = [cache.dir / f"{k}{treecache.LAYER}" for k in self._layer_keys(restored)]
            self.layers = treelayers.LayeredTree(
                built, self.layers_root, lowers if restored >= 0 else ()
            )
            with self.timer.stage("tree cache restore" if restored >= 0 else "tree layers"):
                self.layers.mount(self.stack)
        elif hit is not None:
            with self.timer.stage("tree cache restore"):
                cache.restore(hit, built)

    def _miss_reasons(
        self, cache: treecache.TreeCache, names: str, n: int, restored: int
    ) -> list[str]:
        """Why checkpoint ``n`` misses: what changed in its own inputs since the newest
        entry for the same elements there, and whether the tree before it is new."""
        chain = self.checkpoints
        c = chain[n]
        reasons = []
        if n > restored + 1:
            before = chain[n - 1].after
            if c.key == c.parent:
                return [f"the same tree as after {before} ({'/'.join(c.phases)}: no hooks)"]
            reasons.append(f"the tree after {before} is rebuilt")
        previous = cache.newest_inputs(names, self.cfg.arch, c.after, c.parent)
        if previous is None:
            return reasons or ["no earlier entry for these elements"]
        own = dict(c.inputs)
        old = {k: v for k, v in previous.items() if k != "checkpoint parent"}
        reasons += treecache.describe_changes(old, own)
        if not reasons:
            if self.cfg.tree_cache_max_age <= 0:
                reasons = ["reuse switched off (DIB_TREE_CACHE_MAX_AGE=0)"]
            elif n >= self.restore_limit:
                reasons = [f"break={','.join(self.cfg.breaks)} needs {c.phases[0]} to run"]
            elif cache.has(c.key):
                reasons = ["the entry with the same inputs is too old"]
            else:
                reasons = ["the entry with the same inputs was removed"]
        return reasons

    def _run_phases(self, built: Path, restored: int) -> None:
        """The tree phases of model.PHASE_TABLE after checkpoint ``restored`` (all of them
        for -1), one segment per checkpoint; the tree is saved at each checkpoint missed.

        A segment with a chroot phase enters the chroot environment at its start and
        leaves it at its checkpoint, so that a build continuing from a restored checkpoint
        runs exactly what a cold build runs."""
        segments = tree_segments()
        chain = self.checkpoints
        for n, seg in enumerate(segments):
            if n <= restored:
                continue
            with contextlib.ExitStack() as cstack:
                entered = bound = False
                for spec in seg:
                    if spec.in_chroot and not self.linux:
                        continue  # plan() refused every chroot hook of such an image
                    if self.linux and not entered and any(p.in_chroot for p in seg):
                        if self.apt_pool is not None:
                            # entered first: undone after the chroot's processes are gone
                            cstack.enter_context(pkgcache.bound(built, self.apt_pool))
                        cstack.enter_context(chroot.chroot_environment(built))
                        entered = True
                    if spec.in_chroot and not bound:
                        assert self.tree is not None
                        chroot.bind_hooks(built, self.tree.root, cstack)
                        bound = True
                    if spec.name == PACKAGES_PHASE and self.cfg.packages:
                        self._install_packages(built)
                    self.phase(spec.name, built, in_chroot=spec.in_chroot)
                    if spec.name == "root.d" and not any(built.iterdir()):
                        raise DibpyError(
                            "root.d produced no root filesystem",
                            hint="an operating-system element (debian-minimal, ubuntu, "
                            "centos, ...) must populate $TARGET_ROOT in root.d",
                        )
                    if spec.name == "root.d" and not self.linux:
                        LOG.info("the image is %s: no chroot phases", self.plan.os_family)
            last = n == len(segments) - 1
            if last:
                # diskimage-builder unmounts what hooks mounted in the tree (its shared apt
                # cache bind mount, say) before the tree is sized, copied and cached
                unmount_left_behind(built, "the tree")
            if chain:
                self._checkpoint(built, n, restored)

    def _checkpoint(self, built: Path, n: int, restored: int) -> None:
        """Save the tree as checkpoint ``n`` of the chain if it was missed: a snapshot now
        (compressed in the background) if a later phase changes the tree; else, at the
        last checkpoint, the tree itself, in the background until it is copied into the
        image."""
        cache, chain = self.tree_cache, self.checkpoints
        assert cache is not None
        last = n == len(chain) - 1
        c = chain[n]
        if not last and n > 0 and c.key == c.parent:
            return  # the same tree as the checkpoint before: saved (or restored) already
        if not last and all(later.key == c.key for later in chain[n + 1 :]):
            return  # no later phase has a hook: saved from the tree at the last checkpoint
        if last:
            # the first checkpoint of the same tree (post-install.d's, when no post-root.d
            # hook runs) is the one saved
            first = min(m for m, other in enumerate(chain) if other.key == c.key)
            if first <= restored:
                return
            c = chain[first]
        if self.layering_stopped:
            return
        left = [m for m in mounts.mounts_under(built) if m != os.path.realpath(built)]
        if left:
            # a layer is sealed by unmounting the tree: nothing after this is kept
            self.layering_stopped = self.layers is not None
            LOG.info(
                "tree cache: not keeping the tree after %s: a hook's mount is in it (%s), "
                "which a restore could not bring back",
                c.after,
                ", ".join(left),
            )
            return
        assert self.tree is not None
        hooks = treecache.hooks_delta(self.tree.root, self.hooks_baseline)
        if hooks is None:
            self.layering_stopped = self.layers is not None
            LOG.info(
                "tree cache: not keeping the tree after %s: the hooks wrote more than %d MiB "
                "into the hook tree ($TMP_HOOKS_PATH), which a restore would need back",
                c.after,
                treecache.HOOKS_DELTA_MAX >> 20,
            )
            return
        describe = {
            "elements": " ".join(self.plan.resolution.names),
            "arch": self.cfg.arch,
            "after": c.after,
            "parent": c.parent,
            "inputs": dict(c.inputs),
            "hooks": hooks,
        }
        if self.layers is not None:
            with self.timer.stage(f"checkpoint after {c.after}"):
                upper = self.layers.seal()
                self.layers.push(cache.keep_layer(c.key, upper, describe))
                # the next phases (and the image's copy) see the tree through a new upper
                self.layers.mount(self.stack)
        elif last:
            cache.save_in_background(c.key, built, describe)
        else:
            with self.timer.stage(f"checkpoint after {c.after}"):
                cache.snapshot_in_background(c.key, built, describe, self.build_dir)

    def _install_packages(self, built: Path) -> None:
        with self.timer.stage("packages (-p)"):
            LOG.info("installing -p packages: %s", " ".join(self.cfg.packages))
            chroot.refresh_resolv_conf(built)
            env = self.hook_env(built, in_chroot=True)
            try:
                run.run(
                    ["chroot", str(built), "install-packages", *self.cfg.packages],
                    env=env,
                    inherit_env=False,
                    on_line=lambda line: LOG.info("install-packages: %s", line),
                    stderr_to_stdout=True,
                )
            except DibpyError as e:
                raise DibpyError(
                    f"installing the -p packages {' '.join(self.cfg.packages)} failed: {e}",
                    hint="check the package names for this distribution and release",
                ) from None

    def _image(self, built: Path) -> tuple[Path | None, list[Path]]:
        cfg = self.cfg
        with self.timer.stage("sizing"):
            # layers: what hooks mounted in the tree is unmounted already (_run_phases)
            tree = dir_size(built, one_fs=self.layers is None)
            efi = "block-device-efi" in " ".join(self.plan.resolution.names)
            size = image_size_for(cfg, tree, efi)
            LOG.info("tree is %.0f MiB; image size %.0f MiB", tree / MIB, size / MIB)
            if cfg_env(cfg, "DIB_SHOW_IMAGE_USAGE") not in ("", "0"):
                full = cfg_env(cfg, "DIB_SHOW_IMAGE_USAGE_FULL") not in ("", "0")
                log_image_usage(built, full)
        params = _bd_params(cfg, self.build_dir, size)
        assert self.plan.block_device_text is not None
        self._write_params_file(params, self.plan.block_device_text)
        self._block_device_hooks(built)
        config = load_config(
            self.plan.block_device_text, params, origin=self.plan.block_device_origin
        )
        bd = BlockDevice(config, params)
        # from here on the image is mounted at mnt (see _make_build_dir)
        if params.mount_base.is_symlink():
            params.mount_base.unlink()
            params.mount_base.mkdir()
        with self.timer.stage("block device"):
            bd.create(self.stack)
        mnt: Path = bd.root_mount
        ours = set(mounts.mounts_under(mnt))
        extra = hookenv.block_device_env(cfg, bd.getval, bd.image_path)
        with self.timer.stage("copy tree in"):
            run.run(["cp", "-a", "--", f"{built}/.", f"{mnt}/"])
            # the tree is in the image now: free the tmpfs for the outputs, unless it has
            # room to spare, when the tree cache goes on saving it beside the rest of the
            # build (the finalise phases and the outputs)
            saving_beside = self.tree_cache is not None and _room_to_spare(self.build_dir)
            if not saving_beside:
                if self.tree_cache is not None:
                    self.tree_cache.wait()
                self._free_tree(built)
            if self.linux:
                bd.write_fstab(mnt / "etc")
        self._finalise(mnt, extra)
        self.phase("cleanup.d", mnt, in_chroot=False, extra=extra)
        unmount_left_behind(mnt, "the image", keep=ours)
        _empty_dir(mnt / "tmp")
        manifest_dir = self._copy_manifests(mnt)
        outputs: list[Path] = []
        opts = output_options(cfg)
        tree_outputs = [po for po in self.plan.outputs if po[0].needs_tree]
        if tree_outputs:
            with self.timer.stage("tree outputs"):
                outputs += self._write_outputs(tree_outputs, mnt, opts, tree=True)
        with self.timer.stage("unmount"):
            bd.umount()
        image_outputs = [po for po in self.plan.outputs if not po[0].needs_tree]
        with self.timer.stage("outputs"):
            outputs += self._write_outputs(image_outputs, Path(bd.image_path), opts)
        if saving_beside:
            assert self.tree_cache is not None
            with self.timer.stage("tree cache save"):
                self.tree_cache.wait()
            self._free_tree(built)
        return manifest_dir, outputs

    def _free_tree(self, built: Path) -> None:
        """Remove the tree (once the image has it): with layers, unmount its overlay, let
        the cache finish keeping the layers, then remove the build's own layers."""
        if self.layers is not None:
            self.layers.unmount()
            assert self.tree_cache is not None
            self.tree_cache.wait()
            self.tree_cache.release()
            _rmtree_logged(self.layers.root)
        _rmtree_logged(built)

    def _finalise(self, root: Path, extra: Mapping[str, str]) -> None:
        """pre-finalise.d on the host, then finalise.d in the chroot of ``root``."""
        assert self.tree is not None
        if not self.linux:
            self.phase("pre-finalise.d", root, in_chroot=False, extra=extra)
            return
        with contextlib.ExitStack() as cstack:
            cstack.enter_context(chroot.chroot_environment(root))
            self.phase("pre-finalise.d", root, in_chroot=False, extra=extra)
            chroot.bind_hooks(root, self.tree.root, cstack)
            self.phase("finalise.d", root, in_chroot=True, extra=extra)

    def _write_params_file(self, params: BlockDeviceParams, config_text: str) -> None:
        """diskimage-builder's block-device params file, for hooks that read it."""
        bd_dir = self.build_dir / "block-device"
        (bd_dir / "config.yaml").write_text(config_text)
        data = {
            "config": str(bd_dir / "config.yaml"),
            "image-dir": str(params.image_dir),
            "root-fs-type": params.root_fs_type,
            "root-label": params.effective_root_label,
            "mount-base": str(params.mount_base),
            "build-dir": str(params.build_dir),
            "image-size": f"{(params.image_size or 0) // 1024}KiB",
            "root-fs-opts": " ".join(shlex.quote(o) for o in params.root_fs_opts),
        }
        (bd_dir / "params.yaml").write_text(yaml.safe_dump(data, default_flow_style=False))

    def _block_device_hooks(self, built: Path) -> None:
        """block-device.d, diskimage-builder's legacy phase, runs before the block device
        is made; a hook that makes the device itself (prints IMAGE_BLOCK_DEVICE=) is
        refused, since dibpy's block-device layer owns every device of the build."""
        assert self.tree is not None
        if not self.tree.scan("block-device.d").hooks:
            return
        if self.tree_cache is not None and self.layers is None:
            self.tree_cache.wait()  # its hooks run on the tree the cache may still be reading
        seen: list[str] = []
        self.phase(
            "block-device.d",
            built,
            in_chroot=False,
            on_line=lambda line: seen.append(line) if "IMAGE_BLOCK_DEVICE=" in line else None,
        )
        if seen:
            raise DibpyError(
                f"a block-device.d hook made its own block device ({seen[0].strip()})",
                hint="describe the disk in a block-device YAML config (DIB_BLOCK_DEVICE_CONFIG "
                "or an element's block-device-default.yaml); dibpy creates and frees it",
            )

    def _copy_manifests(self, root: Path) -> Path | None:
        return self._copy_manifests_from(root / "etc" / "dib-manifests")

    def _copy_manifests_from(self, src: Path) -> Path | None:
        """NAME.d beside the image, with a copy of ``src`` (the image's /etc/dib-manifests)."""
        dest = self.cfg.output_base.with_name(self.cfg.output_base.name + ".d")
        try:
            if not dest.exists():
                recovery.note_made(self.build_dir, dest)
                dest.mkdir(parents=True)
                self.new_manifest_dir = dest
            if src.is_dir():
                target = dest / "dib-manifests"
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(src, target, symlinks=True)
        except (OSError, shutil.Error) as e:
            raise DibpyError(
                f"cannot copy the build's manifests to {dest}: {_os_reason(e)}",
                hint="-o must name a place you can write to, with room for the image",
            ) from None
        return dest

    def _drop_new_manifest_dir(self) -> None:
        if self.new_manifest_dir is not None:
            LOG.info("removing %s: the build failed", self.new_manifest_dir)
            _rmtree_logged(self.new_manifest_dir)

    def _write_build_record(self, manifest_dir: Path | None) -> None:
        if manifest_dir is None:
            return
        record = {
            "builder": f"dibpy {__version__}",
            "elements": self.plan.resolution.names,
            "requested": list(self.cfg.elements),
            "arch": self.cfg.arch,
            "types": list(self.cfg.image_types),
            "stages": [{"name": n, "seconds": round(t, 3)} for n, t in self.timer.stages],
            "tree_cache": self.cache_record
            or {"tree_key": self.tree_key, "reused": False, "enabled": not self.cfg.no_cache},
        }
        (manifest_dir / "dibpy-build.json").write_text(json.dumps(record, indent=2) + "\n")

    def _write_outputs(
        self,
        todo: list[tuple[OutputPlugin, Path]],
        source: Path,
        opts: OutputOptions,
        tree: bool = False,
    ) -> list[Path]:
        """Write outputs in parallel; each is checked before it is renamed into place."""
        for _, dest in todo:
            dest.parent.mkdir(parents=True, exist_ok=True)
        written = outputs_mod.write_all(
            todo,
            source,
            opts,
            tree=tree,
            keep_old=lambda d: _keep_old(d, self.cfg.overwrite_old_image),
        )
        if events.enabled():
            types = {dest: plugin.name for plugin, dest in todo}
            for path in written:
                events.output_written(path, types.get(path))
        if self.cfg.checksum:
            for dest in (d for _, d in todo):
                # md5sum's line names the image as the user's -o did
                given = Path(self.cfg.image_name).expanduser().parent / dest.name
                write_checksums(dest, self.cfg.checksum, str(given))
        return written


def write_checksums(path: Path, algorithms: Sequence[str], label: str = "") -> None:
    """``NAME.md5`` / ``NAME.sha256`` beside the image, in md5sum's format, reading it once;
    the line names the image as ``label`` (diskimage-builder runs md5sum on ``-o``'s path).
    An output of several files (a split VMDK, a .vmx and its disk) is one set with one
    checksum file: a line per file, so ``sha256sum -c NAME.vmdk.sha256`` checks them all."""
    from dibpy.outputs import fileset

    lines: dict[str, list[str]] = {a: [] for a in algorithms}
    for member in fileset.members(path) or [path]:
        sums = {a: hashlib.new(a) for a in algorithms}
        with open(member, "rb") as f:
            while chunk := f.read(4 * MIB):
                for h in sums.values():
                    h.update(chunk)
        name = label or path.name
        if member != path:
            name = str(Path(name).with_name(member.name)) if label else member.name
        for a, h in sums.items():
            lines[a].append(f"{h.hexdigest()}  {name}\n")
    for a in algorithms:
        out = Path(f"{path}.{a}")
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(lines[a]))
        os.replace(tmp, out)


def old_image_name(dest: Path, when: float | None = None) -> Path:
    """diskimage-builder's name for a previous image: ``NAME-YYYY.MM.DD-HH.MM.SS.EXT``."""
    stamp = time.strftime("%Y.%m.%d-%H.%M.%S", time.localtime(when))
    stem, dot, ext = dest.name.rpartition(".")
    if not dot:
        return dest.with_name(f"{dest.name}-{stamp}")
    return dest.with_name(f"{stem}-{stamp}.{ext}")


def _keep_old(dest: Path, overwrite: bool) -> None:
    """An existing output is renamed with a timestamp (its checksum files with it), unless
    OVERWRITE_OLD_IMAGE; an image without a checksum asked for keeps no stale sums."""
    if not dest.exists() or overwrite:
        for a in CHECKSUMS:
            _unlink_quiet(Path(f"{dest}.{a}"))
        return
    from dibpy.outputs import fileset

    old = old_image_name(dest)
    LOG.info("old image found: keeping the previous %s as %s", dest.name, old.name)
    # a set (split VMDK, .vmx + disk) is renamed as one, its names inside rewritten
    fileset.rename_set(dest, old)
    for a in CHECKSUMS:
        side = Path(f"{dest}.{a}")
        if side.exists():
            os.replace(side, Path(f"{old}.{a}"))


def _empty_dir(d: Path) -> None:
    if not d.is_dir() or d.is_symlink():
        return
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            _unlink_quiet(child)


def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _unlink_quiet(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        p.unlink()


def _room_to_spare(build_dir: Path, spare: int = 2 * GIB) -> bool:
    """Has the build directory's filesystem ``spare`` bytes free?"""
    try:
        st = os.statvfs(build_dir)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= spare


def _release_note(build_dir: Path) -> None:
    if not build_dir.exists():
        recovery.release(build_dir)


def _rmtree_logged(p: Path) -> None:
    if not p.exists():
        return
    left = mounts.mounts_under(p)
    if left:
        LOG.error("not removing %s: still mounted: %s", p, ", ".join(left))
        return
    try:
        shutil.rmtree(p)
    except OSError as e:
        LOG.error("could not remove %s: %s", p, e)


def build(cfg: BuildConfig) -> BuildResult:
    """Validate, then build.  Raises DibpyError (with the phase, element and hook) on failure."""
    return Build(plan(cfg)).run()
