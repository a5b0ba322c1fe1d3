"""One frozen, typed BuildConfig, built from one table of settings.

Each :class:`Setting` names its command-line flags, the environment variable that
diskimage-builder reads for it, its parser and its default.  The command line wins over
the environment, which wins over the default.  Every value is checked before any work
starts, and all bad values are reported together.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from dibpy.errors import ConfigError, MultiError

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armhf",
    "armhf": "armhf",
    "ppc64le": "ppc64el",
    "ppc64el": "ppc64el",
    # big-endian POWER, which diskimage-builder's elements still name
    "ppc64": "ppc64",
    "powerpc": "powerpc",
    "s390x": "s390x",
    "i386": "i386",
    "i686": "i386",
}


def host_arch() -> str:
    if shutil.which("dpkg"):
        import subprocess

        r = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    return _ARCH_ALIASES.get(platform.machine(), platform.machine())


def arch_aliases() -> dict[str, list[str]]:
    """Each architecture dibpy knows -> the other names it accepts for it."""
    out: dict[str, list[str]] = {}
    for alias, arch in _ARCH_ALIASES.items():
        out.setdefault(arch, [])
        if alias != arch:
            out[arch].append(alias)
    return out


def parse_arch(value: str) -> str:
    if value not in _ARCH_ALIASES:
        known = ", ".join(sorted(set(_ARCH_ALIASES.values())))
        raise ValueError(f"unknown architecture {value!r} (known: {known})")
    return _ARCH_ALIASES[value]


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MULT = {"": 1024**3, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_gib_size(value: str) -> int:
    """A size in GiB (diskimage-builder's unit for --image-size), or with a unit suffix."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size (a number of GiB, or e.g. 512M, 3G)")
    num, unit = float(m.group(1)), (m.group(2) or "").upper()
    mult = _MULT[unit[:1]] if unit else _MULT[""]
    size = int(num * mult)
    if size <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return size


def parse_mib_size(value: str) -> int:
    """A size in MiB (diskimage-builder's unit for --image-extra-size), or with a unit."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size (a number of MiB, or e.g. 512M, 2G)")
    num, unit = float(m.group(1)), (m.group(2) or "").upper()
    size = int(num * (_MULT[unit[:1]] if unit else _MULT["M"]))
    if size <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return size


CHECKSUMS = ("md5", "sha256")


def parse_checksum(value: str) -> tuple[str, ...]:
    """diskimage-builder's DIB_CHECKSUM: 0 (none), 1 (md5 and sha256), or the algorithms."""
    v = value.strip().lower()
    if v in ("", "0", "no", "false", "off"):
        return ()
    if v in ("1", "yes", "true", "on"):
        return CHECKSUMS
    names = [n.strip() for n in re.split(r"[,\s]+", v) if n.strip()]
    unknown = [n for n in names if n not in CHECKSUMS]
    if unknown or not names:
        raise ValueError(
            f"{value!r}: {', '.join(unknown) or 'nothing'} is not a checksum dibpy writes "
            "(0, 1, md5, sha256 or md5,sha256)"
        )
    return tuple(c for c in CHECKSUMS if c in names)


def parse_positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if n < 0:
        raise ValueError(f"{value!r} must not be negative")
    return n


def parse_block_size(value: str) -> int:
    """diskimage-builder's DIB_BLOCK_SIZE: the loop devices' logical sector size."""
    if value.strip() not in ("512", "4096"):
        raise ValueError(f"{value!r} is not a loop device block size (512 or 4096)")
    return int(value)


_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")


def parse_release(value: str) -> str:
    """DIB_RELEASE: a code name or version (bookworm, jammy, 9-stream, 7); anything else
    would reach the bootstrap tool and fail there, many lines later."""
    if not _RELEASE.match(value):
        raise ValueError(
            f"{value!r} is not a release name (letters, digits and . _ + ~ - only; "
            "e.g. bookworm, noble, 9-stream)"
        )
    return value


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a yes/no value (use 1 or 0)")


def parse_types(value: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in value.split(",") if t.strip())
    if not types:
        raise ValueError("no output type given")
    return types


#: the closed vocabularies of settings (a parser and the BuildConfig field share them)
InstallType = Literal["source", "package"]
FsType = Literal["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat"]


def parse_install_type(value: str) -> InstallType:
    if value not in get_args(InstallType):
        raise ValueError(f"{value!r} is not an install type (source or package)")
    return cast(InstallType, value)


def parse_qemu_img_options(value: str) -> str:
    for item in value.split(","):
        if item and "=" not in item:
            raise ValueError(f"{item!r} is not key=value (e.g. compat=0.10,cluster_size=2M)")
    return value


def parse_break(value: str) -> tuple[str, ...]:
    from dibpy.elements.model import PHASES

    names = [p.removesuffix(".d") for p in PHASES]
    out = tuple(v.strip() for v in value.split(",") if v.strip())
    for v in out:
        if v == "after-error":
            continue
        m = re.match(r"^(before|after)-(.+)$", v)
        if not m:
            raise ValueError(f"{v!r} is not before-PHASE, after-PHASE or after-error")
        if m.group(2) not in names:
            raise ValueError(
                f"{v!r}: {m.group(2)!r} is not a phase (PHASE is one of {', '.join(names)})"
            )
    return out


def parse_fs_type(value: str) -> FsType:
    if value not in get_args(FsType):
        raise ValueError(f"{value!r} is not a root filesystem type (ext2/3/4, xfs, btrfs)")
    return cast(FsType, value)


def _user_path(value: str) -> Path:
    return Path(value).expanduser().absolute()


def parse_age(value: str) -> int:
    m = re.match(r"^\s*([0-9]+)\s*([smhd]?)\s*$", value)
    if not m:
        raise ConfigError(
            f"DIB_TREE_CACHE_MAX_AGE={value!r}: not an age",
            hint="seconds, or with a unit: 90m, 12h, 7d; 0 turns reuse off",
        )
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _parse_age(value: str) -> int:
    try:
        return parse_age(value)
    except ConfigError as e:
        raise ValueError(f"{value!r} is not an age ({e.hint})") from None


@dataclass(frozen=True)
class Setting:
    """One build setting: where it comes from and how it is parsed."""

    dest: str
    flags: tuple[str, ...] = ()
    env: str | None = None
    parse: Callable[[str], Any] | None = None
    help: str = ""
    metavar: str | None = None
    #: "store" (takes a value), "flag" (boolean), "count", "append"
    kind: str = "store"
    #: other variables diskimage-builder reads for the same setting (after ``env``)
    env_aliases: tuple[str, ...] = ()
    #: its key in diskimage-builder's YAML image files (dibpy.yamlbuild)
    yaml: str | None = None
    #: how that key's value becomes arguments, when not what ``kind`` implies
    #: ("value", "switch", "count", "list": FLAG A,B, "map": FLAG K=V,K2=V2)
    yaml_kind: str | None = None

    @property
    def yaml_argument(self) -> str:
        """How the YAML front end passes this setting's value (see ``yaml_kind``)."""
        implied = {"flag": "switch", "count": "count", "append": "list"}
        return self.yaml_kind or implied.get(self.kind, "value")

    @property
    def env_names(self) -> tuple[str, ...]:
        return ((self.env,) if self.env else ()) + self.env_aliases

    @property
    def field(self) -> dataclasses.Field[Any]:
        """Its :class:`BuildConfig` field: the type and default live there only."""
        return {f.name: f for f in dataclasses.fields(BuildConfig)}[self.dest]

    @property
    def default(self) -> Any:
        f = self.field
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "image_name",
        ("-o",),
        "IMAGE_NAME",
        str,
        "output image name (and path)",
        "NAME",
        yaml="imagename",
    ),
    Setting(
        "image_types",
        ("-t",),
        None,
        parse_types,
        "comma-separated output types (default qcow2)",
        "TYPES",
        yaml="types",
        yaml_kind="list",
    ),
    Setting(
        "arch",
        ("-a",),
        "ARCH",
        parse_arch,
        "target architecture (default: host)",
        "ARCH",
        yaml="arch",
    ),
    Setting(
        "debug_trace",
        ("-x",),
        "DIB_DEBUG_TRACE",
        parse_positive_int,
        "trace hooks (repeat for more)",
        kind="count",
        yaml="debug-trace",
    ),
    Setting(
        "uncompressed",
        ("-u",),
        None,
        None,
        "do not compress qcow2 output",
        kind="flag",
        yaml="uncompressed",
    ),
    Setting(
        "clear_env", ("-c",), None, None, "clear the environment first", kind="flag", yaml="clear"
    ),
    Setting(
        "skip_base",
        ("-n",),
        None,
        None,
        "do not add the base element",
        kind="flag",
        yaml="skip-base",
    ),
    Setting(
        "packages",
        ("-p",),
        None,
        str,
        "extra packages to install (repeatable, comma list)",
        "PKGS",
        kind="append",
        yaml="packages",
    ),
    Setting(
        "checksum",
        ("--checksum",),
        "DIB_CHECKSUM",
        parse_checksum,
        "write .md5 and .sha256 files (DIB_CHECKSUM=md5 or sha256 for one)",
        kind="flag",
        yaml="checksum",
    ),
    Setting(
        "image_size",
        ("--image-size",),
        "DIB_IMAGE_SIZE",
        parse_gib_size,
        "image size in GiB (or with a unit: 3G, 2500M)",
        "SIZE",
        yaml="image-size",
    ),
    Setting(
        "image_extra_size",
        ("--image-extra-size",),
        "DIB_IMAGE_EXTRA_SIZE",
        parse_mib_size,
        "extra space in MB beyond the tree's size (instead of the tree / 0.6)",
        "SIZE",
        yaml="image-extra-size",
    ),
    Setting(
        "image_cache",
        ("--image-cache",),
        "DIB_IMAGE_CACHE",
        _user_path,
        "cache directory",
        "DIR",
        yaml="image-cache",
    ),
    Setting(
        "max_online_resize",
        ("--max-online-resize",),
        "MAX_ONLINE_RESIZE",
        parse_positive_int,
        "largest size (in fs blocks) to allow online resize to",
        "N",
        yaml="max-online-resize",
    ),
    Setting(
        "min_tmpfs",
        ("--min-tmpfs",),
        "DIB_MIN_TMPFS",
        parse_positive_int,
        "minimum tmpfs size in GiB for the build dir",
        "GB",
        yaml="min-tmpfs",
    ),
    Setting(
        "no_tmpfs",
        ("--no-tmpfs",),
        "DIB_NO_TMPFS",
        parse_bool,
        "do not build in tmpfs",
        kind="flag",
        yaml="no-tmpfs",
    ),
    Setting(
        "mkfs_options",
        ("--mkfs-options",),
        "DIB_MKFS_OPTS",
        str,
        "extra options for the root mkfs",
        "OPTS",
        env_aliases=("MKFS_OPTS",),
        yaml="mkfs-options",
    ),
    Setting(
        "mkfs_journal_size",
        ("--mkfs-journal-size",),
        "DIB_JOURNAL_SIZE",
        parse_positive_int,
        "ext4 journal size in MiB",
        "MB",
        yaml="mkfs-journal-size",
    ),
    Setting(
        "qemu_img_options",
        ("--qemu-img-options",),
        "DIB_QEMU_IMG_OPTIONS",
        parse_qemu_img_options,
        "qemu-img -o options (k=v,...)",
        "OPTS",
        env_aliases=("QEMU_IMG_OPTIONS",),
        yaml="qemu-img-options",
        yaml_kind="map",
    ),
    Setting(
        "root_label",
        ("--root-label",),
        "DIB_ROOT_LABEL",
        str,
        "root filesystem label (default cloudimg-rootfs; img-rootfs for xfs)",
        "LABEL",
        env_aliases=("ROOT_LABEL",),
        yaml="root-label",
    ),
    Setting(
        "ramdisk_element",
        ("--ramdisk-element",),
        "RAMDISK_ELEMENT",
        str,
        "the element a ramdisk build adds",
        "ELEMENT",
        yaml="ramdisk-element",
    ),
    Setting(
        "install_type",
        ("--install-type",),
        "DIB_DEFAULT_INSTALLTYPE",
        parse_install_type,
        "default install type (source or package)",
        "TYPE",
        yaml="install-type",
    ),
    Setting(
        "no_cache",
        ("--no-cache",),
        "DIB_NO_CACHE",
        parse_bool,
        "build from scratch: do not reuse a cached tree or bootstrap",
        kind="flag",
    ),
    Setting(
        "tree_cache_max_age",
        (),
        "DIB_TREE_CACHE_MAX_AGE",
        _parse_age,
    ),
    Setting("tree_cache_layers", (), "DIB_TREE_CACHE_LAYERS", parse_bool),
    Setting("image_cache_outputs", (), "DIB_IMAGE_CACHE_OUTPUTS", parse_bool),
    Setting(
        "docker_target",
        ("--docker-target",),
        "DIB_DOCKER_TARGET",
        str,
        "REPOSITORY[:TAG] for -t docker",
        "TARGET",
        env_aliases=("DOCKER_TARGET",),
        yaml="docker-target",
    ),
    Setting(
        "logfile",
        ("--logfile",),
        "LOGFILE",
        Path,
        "write the log here (quiet console)",
        "FILE",
        yaml="logfile",
    ),
    Setting(
        "offline",
        ("--offline",),
        "DIB_OFFLINE",
        parse_bool,
        "build from caches, no network",
        kind="flag",
        yaml="offline",
    ),
    Setting(
        "boot_test",
        ("--boot-test",),
        None,
        None,
        "boot the image in QEMU afterwards and wait for a login prompt",
        kind="flag",
    ),
    Setting(
        "strict",
        ("--strict",),
        "DIB_STRICT",
        parse_bool,
        "a DIB_* variable no element of the build reads is an error, not a warning",
        kind="flag",
    ),
    Setting("fs_type", (), "FS_TYPE", parse_fs_type),
    Setting("tmp_dir", (), "TMP_DIR", Path),
    Setting("overwrite_old_image", (), "OVERWRITE_OLD_IMAGE", parse_bool),
    Setting("block_device_config", (), "DIB_BLOCK_DEVICE_CONFIG", str),
    Setting("block_size", (), "DIB_BLOCK_SIZE", parse_block_size),
    Setting("breaks", (), "break", parse_break),
    Setting("release", (), "DIB_RELEASE", parse_release),
    Setting("mirror", (), "DIB_DISTRIBUTION_MIRROR", str),
)


@dataclass(frozen=True)
class BuildConfig:
    """Everything one build needs to know, checked.  Immutable."""

    elements: tuple[str, ...]
    image_name: str = "image"
    image_types: tuple[str, ...] = ("qcow2",)
    #: build_config sets the host's architecture when none is given
    arch: str = field(default="amd64", metadata={"doc_default": "the host's"})
    debug_trace: int = 0
    uncompressed: bool = False
    clear_env: bool = False
    skip_base: bool = False
    packages: tuple[str, ...] = ()
    #: the checksum files to write beside each image ("md5", "sha256")
    checksum: tuple[str, ...] = ()
    image_size: int | None = None
    image_extra_size: int | None = None
    image_cache: Path = Path("~/.cache/image-create").expanduser()
    max_online_resize: int | None = None
    min_tmpfs: int = 2
    no_tmpfs: bool = False
    mkfs_options: str = ""
    mkfs_journal_size: int | None = None
    qemu_img_options: str = ""
    root_label: str | None = None
    ramdisk_element: str = "ramdisk"
    install_type: InstallType = "source"
    no_cache: bool = False
    tree_cache_max_age: int = 24 * 3600
    #: DIB_TREE_CACHE_LAYERS: checkpoints as overlayfs layers where the kernel allows
    tree_cache_layers: bool = True
    #: DIB_IMAGE_CACHE_OUTPUTS: an unchanged rebuild copies the outputs kept last time
    image_cache_outputs: bool = True
    docker_target: str | None = None
    logfile: Path | None = None
    offline: bool = False
    boot_test: bool = False
    #: --strict / DIB_STRICT: an unread DIB_* variable fails the build in validation
    strict: bool = False
    fs_type: FsType = "ext4"
    tmp_dir: Path = Path("/tmp")
    overwrite_old_image: bool = False
    block_device_config: str | None = None
    #: DIB_BLOCK_SIZE: loop devices' sector size; set, it wins over a local_loop's own
    block_size: int | None = None
    breaks: tuple[str, ...] = ()
    release: str | None = None
    mirror: str | None = None
    ramdisk: bool = False
    #: the environment the build started with (DIB_* variables reach the hooks)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    argv: tuple[str, ...] = ()

    @property
    def output_base(self) -> Path:
        """IMAGE_NAME without a type suffix (stripped when a single type is asked for)."""
        name = self.image_name
        if len(self.image_types) == 1 and name.endswith("." + self.image_types[0]):
            name = name[: -len(self.image_types[0]) - 1]
        return Path(name).expanduser().absolute()

    @property
    def effective_root_label(self) -> str:
        if self.root_label:
            return self.root_label
        return "img-rootfs" if self.fs_type == "xfs" else "cloudimg-rootfs"


def build_config(
    cli_values: Mapping[str, Any],
    elements: Sequence[str],
    environ: Mapping[str, str] | None = None,
    *,
    ramdisk: bool = False,
    argv: Sequence[str] = (),
) -> BuildConfig:
    """Merge command line > environment > defaults; report every bad value at once."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for s in SETTINGS:
        raw = cli_values.get(s.dest)
        source = (s.flags[0] if s.flags else "") or (s.env or s.dest)
        if s.kind == "flag":
            if raw:
                # a flag means what its variable set to 1 means (--checksum: both sums)
                values[s.dest] = s.parse("1") if s.parse else True
                continue
        elif s.kind == "count":
            if raw:
                values[s.dest] = int(raw)
                continue
        elif s.kind == "append":
            if raw:
                items = [p.strip() for chunk in raw for p in chunk.replace(",", " ").split()]
                values[s.dest] = tuple(p for p in items if p)
                continue
        elif raw is not None:
            try:
                values[s.dest] = s.parse(raw) if s.parse else raw
            except ValueError as e:
                problems.append(f"{source}: {e}")
            continue
        name = next((n for n in s.env_names if env.get(n, "") != ""), None)
        if name is not None:
            try:
                values[s.dest] = s.parse(env[name]) if s.parse else parse_bool(env[name])
            except ValueError as e:
                problems.append(f"environment variable {name}: {e}")
    if "arch" not in values:
        values["arch"] = host_arch()
    if not elements:
        problems.append("no elements given")
    if ramdisk and values.get("no_tmpfs") is None:
        values["no_tmpfs"] = True
    if problems:
        raise MultiError(problems, hint="see disk-image-create --help")
    cfg = BuildConfig(
        elements=tuple(elements),
        environ=env,
        ramdisk=ramdisk,
        argv=tuple(argv),
        **values,
    )
    _check(cfg)
    return cfg


def unwritable_parent(path: Path) -> str | None:
    """Why a file cannot be made at ``path`` (its directory, made as needed, must be a
    writable directory), or None.  Checked before the build, not found after it."""
    d = path.parent
    while not d.exists() and d != d.parent:
        if d.is_symlink():
            return f"{d} is a dangling symbolic link"
        d = d.parent
    if not d.is_dir():
        return f"{d} is not a directory"
    if not os.access(d, os.W_OK | os.X_OK):
        return f"{d} is not writable" + (
            " (a read-only filesystem)" if _read_only_fs(d) else " (permissions)"
        )
    return None


def _read_only_fs(d: Path) -> bool:
    try:
        return bool(os.statvfs(d).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _check(cfg: BuildConfig) -> None:
    problems = []
    out = cfg.output_base
    if out.exists() and out.is_dir():
        problems.append(f"-o {cfg.image_name}: is a directory; give a file name")
    elif why := unwritable_parent(out):
        problems.append(f"-o {cfg.image_name}: {why}")
    manifests = out.with_name(out.name + ".d")
    if manifests.exists() and not manifests.is_dir():
        problems.append(
            f"-o {cfg.image_name}: {manifests} (where the build's manifests go) is not a directory"
        )
    if cfg.logfile is not None:
        log = cfg.logfile.expanduser().absolute()
        if log.is_dir():
            problems.append(f"--logfile {cfg.logfile}: is a directory; give a file name")
        elif why := unwritable_parent(log):
            problems.append(f"--logfile {cfg.logfile}: {why}")
    if len(cfg.effective_root_label) > (12 if cfg.fs_type == "xfs" else 16):
        problems.append(f"root label {cfg.effective_root_label!r} is too long for {cfg.fs_type}")
    if cfg.tmp_dir and not cfg.tmp_dir.is_dir():
        problems.append(f"TMP_DIR {cfg.tmp_dir} is not a directory")
    if problems:
        raise MultiError(problems)


__all__ = [
    "SETTINGS",
    "BuildConfig",
    "ConfigError",
    "Setting",
    "arch_aliases",
    "build_config",
    "host_arch",
]
